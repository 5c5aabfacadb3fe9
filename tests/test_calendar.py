"""The business calendar, pure: fixed datetimes in, deadlines out (domain.md §3)."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest

from engine.calendar import SHANGHAI, BusinessCalendar, CalendarError, Target, parse_office_hours


def at(*args) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


CAL = BusinessCalendar()


def test_two_working_hours_across_national_day_end_on_the_8th_at_ten():
    assert CAL.deadline(at(2026, 9, 30, 17), Target("working_hours", 2)).due == at(2026, 10, 8, 10)


def test_five_working_days_count_the_make_up_saturday_and_end_at_six():
    # Oct 8, 9, 10 (调休 Saturday), 12, 13
    assert CAL.deadline(at(2026, 9, 30, 10), Target("working_days", 5)).due == at(2026, 10, 13, 18)


@pytest.mark.parametrize("start, hours, due", [
    (at(2026, 10, 12, 11), 2, at(2026, 10, 12, 15)),       # across the lunch break
    (at(2026, 10, 12, 7, 30), 1, at(2026, 10, 12, 10)),    # before office: counts from 09:00
    (at(2026, 10, 12, 12, 30), 0.5, at(2026, 10, 12, 14, 30)),
    (at(2026, 10, 16, 17), 2, at(2026, 10, 19, 10)),       # Friday evening -> Monday
    (at(2026, 10, 9, 17), 2, at(2026, 10, 10, 10)),        # Friday -> make-up Saturday
    (at(2026, 10, 12, 18), 7, at(2026, 10, 13, 18)),       # exactly one office day
])
def test_working_hours(start, hours, due):
    assert CAL.deadline(start, Target("working_hours", hours)).due == due


def test_working_days_do_not_count_the_start_day_even_when_it_is_a_holiday():
    assert CAL.deadline(at(2026, 10, 3, 10), Target("working_days", 1)).due == at(2026, 10, 8, 18)
    assert CAL.deadline(at(2026, 10, 12, 17, 59), Target("working_days", 1)).due == at(2026, 10, 13, 18)


def test_wall_clock_targets_ignore_the_calendar():
    assert CAL.deadline(at(2026, 10, 1, 23), Target("wall_hours", 0.5)).due == at(2026, 10, 1, 23, 30)


def test_make_up_workdays_and_holidays_from_the_package():
    assert CAL.is_workday(date(2026, 10, 10))      # Saturday, 调休
    assert not CAL.is_workday(date(2026, 10, 5))   # Monday, National Day
    assert CAL.day_source(date(2026, 10, 5)) == "package"


def test_beyond_the_data_weekdays_are_assumed_and_reported():
    d = CAL.deadline(at(2026, 12, 31, 10), Target("working_days", 2))
    assert d.due == at(2027, 1, 4, 18)  # Jan 1 2027 (a Friday, in fact a holiday) assumed a workday
    assert date(2027, 1, 1) in d.assumed and CAL.day_source(date(2027, 1, 1)) == "assumed"


def test_overrides_win_over_the_package_and_the_assumption():
    cal = BusinessCalendar(overrides={date(2027, 1, 1): False, date(2026, 10, 5): True})
    d = cal.deadline(at(2026, 12, 31, 10), Target("working_days", 2))
    assert d.due == at(2027, 1, 5, 18) and date(2027, 1, 1) not in d.assumed
    assert cal.is_workday(date(2026, 10, 5)) and cal.day_source(date(2026, 10, 5)) == "override"


def test_working_time_between_counts_office_time_only():
    assert CAL.working_time_between(at(2026, 9, 30, 17), at(2026, 10, 8, 10)) == timedelta(hours=2)
    assert CAL.working_time_between(at(2026, 10, 12, 8), at(2026, 10, 12, 20)) == timedelta(hours=7)
    assert CAL.working_time_between(at(2026, 10, 13), at(2026, 10, 12)) == timedelta(0)


def test_warning_at_eighty_percent_of_the_working_time():
    start = at(2026, 10, 12, 9)
    due = CAL.deadline(start, Target("working_days", 5)).due
    assert due == at(2026, 10, 19, 18)
    # 42 office hours in all; 80 % = 33.6 h -> Friday 16:36
    assert CAL.fraction_of(start, due, Target("working_days", 5), 0.8) == at(2026, 10, 16, 16, 36)


def test_custom_office_hours():
    cal = BusinessCalendar(office_hours=parse_office_hours("08:30-12:00,13:30-17:30"))
    assert cal.deadline(at(2026, 10, 12, 11), Target("working_hours", 2)).due == at(2026, 10, 12, 14, 30)
    assert cal.deadline(at(2026, 10, 12, 11), Target("working_days", 1)).due == at(2026, 10, 13, 17, 30)


@pytest.mark.parametrize("bad", ["9-12", "09:00-12:00;14:00-18:00", "nonsense"])
def test_bad_office_hours(bad):
    with pytest.raises(CalendarError):
        BusinessCalendar(office_hours=parse_office_hours(bad))


def test_overlapping_or_inverted_periods_are_refused():
    with pytest.raises(CalendarError):
        BusinessCalendar(office_hours=((time(9), time(12)), (time(11), time(18))))
    with pytest.raises(CalendarError):
        BusinessCalendar(office_hours=((time(12), time(9)),))


@pytest.mark.parametrize("kind, amount", [("fortnights", 1), ("working_days", 0), ("working_days", 1.5)])
def test_bad_targets(kind, amount):
    with pytest.raises(CalendarError):
        Target(kind, amount)


def test_naive_datetimes_are_refused():
    with pytest.raises(CalendarError):
        CAL.deadline(datetime(2026, 10, 12, 9), Target("working_hours", 1))


def test_a_calendar_without_workdays_fails_clearly_instead_of_looping():
    cal = BusinessCalendar(overrides={date(2026, 10, 12) + timedelta(days=i): False for i in range(4000)})
    with pytest.raises(CalendarError, match="no working"):
        cal.deadline(at(2026, 10, 12, 9), Target("working_hours", 1))


def _office_time_minute_by_minute(cal: BusinessCalendar, a: datetime, b: datetime) -> timedelta:
    """The plain definition: count each minute that is inside office hours on a working day."""
    total, t = 0, a
    while t < b:
        local = t.astimezone(SHANGHAI)
        if cal.is_workday(local.date()) and any(s <= local.time() < e for s, e in cal.office_hours):
            total += 1
        t += timedelta(minutes=1)
    return timedelta(minutes=total)


@pytest.mark.parametrize("a, b", [
    (at(2026, 9, 30, 11, 17), at(2026, 10, 9, 15, 3)),   # National Day holidays and the make-up Saturday
    (at(2026, 10, 10, 8, 0), at(2026, 10, 10, 19, 0)),   # the make-up Saturday itself, all of it
    (at(2026, 10, 12, 12, 30), at(2026, 10, 12, 13, 30)),  # inside the lunch break: nothing
    (at(2026, 10, 12, 17, 59), at(2026, 10, 14, 9, 1)),   # across two evenings
    (at(2026, 12, 31, 10, 0), at(2027, 1, 4, 16, 45)),    # New Year, into the year beyond the data
    (at(2026, 10, 3, 10, 0), at(2026, 10, 5, 10, 0)),     # holidays only
])
def test_working_time_between_agrees_with_counting_minutes(a, b):
    cal = BusinessCalendar()
    assert cal.working_time_between(a, b) == _office_time_minute_by_minute(cal, a, b)


def test_working_time_over_years_and_outside_the_counted_span():
    cal = BusinessCalendar(overrides={date(2031, 3, 3): False})
    a, b = at(2029, 12, 30, 10), at(2032, 1, 5, 11)
    expected = sum(cal.is_workday(a.date() + timedelta(days=i)) for i in range(1, (b.date() - a.date()).days)) * 7
    assert cal.working_time_between(a, b) == timedelta(hours=expected) + timedelta(hours=2)  # Jan 5 2032 09-11
    old = (at(2019, 12, 20, 9), at(2020, 1, 10, 18))  # starts before the counted span
    assert cal.working_time_between(*old) == _office_time_minute_by_minute(cal, *old)
    far = (at(2080, 1, 1, 9), at(2080, 1, 20, 18))  # beyond it
    assert cal.working_time_between(*far) == _office_time_minute_by_minute(cal, *far)
