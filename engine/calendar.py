"""The business calendar: office hours on Chinese working days (holidays and 调休 make-up days).

Pure: no database, no clock.  Working days come from, in order of precedence:
administrator overrides (a config file and the admin command/API), then the
``chinesecalendar`` package (official notices, 2004–2026 in 1.11.0), then — for
dates beyond both — the assumption that Monday–Friday are workdays.  Every date
decided by that assumption is reported (:meth:`BusinessCalendar.assumed_days`,
``Deadline.assumed``) so callers can warn loudly instead of being silently wrong.

Semantics (domain.md §3):

* *N working hours* count only office time: 2 working hours from Wed 2026-09-30
  17:00 end Thu 2026-10-08 10:00 (National Day holiday in between).
* *N working days* end at the close of office (18:00) on the Nth working day
  after the start day; the start day does not count.
* *Wall-clock* targets (urgent work) ignore the calendar.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

SHANGHAI = ZoneInfo("Asia/Shanghai")
DEFAULT_OFFICE_HOURS = ((time(9, 0), time(12, 0)), (time(14, 0), time(18, 0)))
MAX_SCAN_DAYS = 3660  # no target spans ten years; guards against a calendar with no workdays


def _package_range() -> tuple[int, int]:
    years = [d.year for d in chinese_calendar.holidays] + [d.year for d in chinese_calendar.workdays]
    return min(years), max(years)


PACKAGE_YEARS = _package_range()


class CalendarError(ValueError):
    """A bad calendar configuration (office hours, overrides) or target."""


@dataclass(frozen=True)
class Target:
    """An SLA target: ``working_hours``, ``working_days`` or ``wall_hours`` (24×7), with an amount."""

    kind: str
    amount: float

    KINDS = ("working_hours", "working_days", "wall_hours")

    def __post_init__(self):
        if self.kind not in self.KINDS:
            raise CalendarError(f"unknown target kind {self.kind!r} (one of {', '.join(self.KINDS)})")
        if not self.amount > 0:
            raise CalendarError("a target must be positive")
        if self.kind == "working_days" and self.amount != int(self.amount):
            raise CalendarError("working days must be a whole number")

    def describe(self) -> str:
        n = int(self.amount) if self.amount == int(self.amount) else self.amount
        return {"working_hours": f"{n} 工作时", "working_days": f"{n} 工作日", "wall_hours": f"{n} 小时"}[self.kind]


@dataclass(frozen=True)
class Deadline:
    due: datetime
    assumed: tuple[date, ...] = ()  # days decided by the weekday assumption (beyond the data)


@dataclass
class BusinessCalendar:
    office_hours: tuple[tuple[time, time], ...] = DEFAULT_OFFICE_HOURS
    overrides: Mapping[date, bool] = field(default_factory=dict)  # date -> is a workday
    tz: ZoneInfo = SHANGHAI

    def __post_init__(self):
        periods = sorted(self.office_hours)
        if not periods:
            raise CalendarError("office hours cannot be empty")
        for (s1, e1), nxt in zip(periods, periods[1:] + [None], strict=False):
            if not s1 < e1:
                raise CalendarError(f"office period {s1:%H:%M}-{e1:%H:%M} ends before it starts")
            if nxt is not None and nxt[0] < e1:
                raise CalendarError("office periods overlap")
        self.office_hours = tuple(periods)
        self.overrides = dict(self.overrides)
        self._workdays: dict[date, bool] = {}  # chinesecalendar re-validates its whole table per call
        self._counts: list[int] = []  # working days from _COUNT_FROM through each day since
        self._day_length = sum((_secs(e) - _secs(s) for s, e in self.office_hours), 0)

    # ---- days ----------------------------------------------------------------------------------
    def day_source(self, day: date) -> str:
        """'override', 'package' or 'assumed' (beyond the official data, no override)."""
        if day in self.overrides:
            return "override"
        if PACKAGE_YEARS[0] <= day.year <= PACKAGE_YEARS[1]:
            return "package"
        return "assumed"

    def is_workday(self, day: date) -> bool:
        known = self._workdays.get(day)
        if known is None:
            if day in self.overrides:
                known = self.overrides[day]
            elif PACKAGE_YEARS[0] <= day.year <= PACKAGE_YEARS[1]:
                known = chinese_calendar.is_workday(day)
            else:
                known = day.weekday() < 5
            self._workdays[day] = known
        return known

    def assumed_days(self, days: Iterable[date]) -> tuple[date, ...]:
        return tuple(sorted({d for d in days if self.day_source(d) == "assumed"}))

    def next_workday(self, day: date) -> date:
        for _ in range(MAX_SCAN_DAYS):
            day += timedelta(days=1)
            if self.is_workday(day):
                return day
        raise CalendarError("no working day within ten years: check the calendar overrides")

    # ---- time ----------------------------------------------------------------------------------
    def _local(self, moment: datetime) -> datetime:
        if moment.tzinfo is None:
            raise CalendarError("naive datetime: give a timezone")
        return moment.astimezone(self.tz)

    def _periods(self, day: date):
        for start, end in self.office_hours:
            yield (datetime.combine(day, start, self.tz), datetime.combine(day, end, self.tz))

    def add_working_time(self, start: datetime, amount: timedelta) -> Deadline:
        """The moment ``amount`` of office time after ``start``."""
        if amount < timedelta(0):
            raise CalendarError("cannot add negative working time")
        moment = self._local(start)
        remaining = amount.total_seconds()
        day = moment.date()
        seen = []
        for _ in range(MAX_SCAN_DAYS):
            seen.append(day)
            if self.is_workday(day):
                for p_start, p_end in self._periods(day):
                    if p_end <= moment:
                        continue
                    begin = max(p_start, moment)
                    available = (p_end - begin).total_seconds()
                    if remaining <= available:
                        return Deadline(begin + timedelta(seconds=remaining), self.assumed_days(seen))
                    remaining -= available
            day += timedelta(days=1)
            moment = datetime.combine(day, time(0), self.tz)
        raise CalendarError("no working time within ten years: check the calendar overrides")

    def add_working_days(self, start: datetime, days: int) -> Deadline:
        """Close of office on the Nth working day after the start day (the start day does not count)."""
        day = self._local(start).date()
        seen = [day]
        for _ in range(days):
            day = self.next_workday(day)
            seen.append(day)
        close = self.office_hours[-1][1]
        # The days skipped between are part of the answer too (a holiday assumed away counts).
        span = [self._local(start).date() + timedelta(days=i) for i in range((day - seen[0]).days + 1)]
        return Deadline(datetime.combine(day, close, self.tz), self.assumed_days(span))

    def working_time_between(self, start: datetime, end: datetime) -> timedelta:
        """Office time between two moments (zero if ``end`` is not after ``start``).

        Only the first and the last day are clipped period by period; each working day
        between counts a whole office day (a queue shows the remaining time of every item,
        deadlines weeks ahead: this is called a lot).
        """
        a, b = self._local(start), self._local(end)
        if b <= a:
            return timedelta(0)
        first, last = a.date(), b.date()
        total = self._office_seconds(first, a, b)
        if last != first:
            total += self._office_seconds(last, a, b)
            total += self._workdays_between(first, last) * self._day_length
        return timedelta(seconds=total)

    def _workdays_between(self, first: date, last: date) -> int:
        """Working days strictly after ``first`` and before ``last``."""
        if last.toordinal() - first.toordinal() < 2:
            return 0
        if first < _COUNT_FROM or last > _COUNT_UNTIL:
            return sum(self.is_workday(first + timedelta(days=i)) for i in range(1, (last - first).days))
        return self._workdays_through(last - timedelta(days=1)) - self._workdays_through(first)

    def _workdays_through(self, day: date) -> int:
        """Working days from :data:`_COUNT_FROM` through ``day`` (a running count, extended as needed)."""
        counts = self._counts
        index = day.toordinal() - _COUNT_FROM.toordinal()
        while len(counts) <= index:
            counts.append((counts[-1] if counts else 0)
                          + self.is_workday(_COUNT_FROM + timedelta(days=len(counts))))
        return counts[index]

    def _office_seconds(self, day: date, a: datetime, b: datetime) -> float:
        """Office time of ``day`` that falls between ``a`` and ``b``."""
        if not self.is_workday(day):
            return 0.0
        total = 0.0
        for p_start, p_end in self._periods(day):
            lo, hi = max(p_start, a), min(p_end, b)
            if hi > lo:
                total += (hi - lo).total_seconds()
        return total

    def deadline(self, start: datetime, target: Target) -> Deadline:
        if target.kind == "working_hours":
            return self.add_working_time(start, timedelta(hours=target.amount))
        if target.kind == "working_days":
            return self.add_working_days(start, int(target.amount))
        return Deadline(self._local(start) + timedelta(hours=target.amount))

    def fraction_of(self, start: datetime, due: datetime, target: Target, ratio: float) -> datetime:
        """The moment ``ratio`` of the way from start to due, measured as the target measures time."""
        if target.kind == "wall_hours":
            return self._local(start) + (self._local(due) - self._local(start)) * ratio
        total = self.working_time_between(start, due)
        return self.add_working_time(start, total * ratio).due

    def shift(self, moment: datetime, by: timedelta, target: Target) -> datetime:
        """Move a deadline later by ``by`` of the target's kind of time (paused time, extensions)."""
        if target.kind == "wall_hours":
            return self._local(moment) + by
        return self.add_working_time(moment, by).due if by > timedelta(0) else self._local(moment)

    def elapsed(self, start: datetime, end: datetime, target: Target) -> timedelta:
        if target.kind == "wall_hours":
            return max(self._local(end) - self._local(start), timedelta(0))
        return self.working_time_between(start, end)


# the span of the running count of working days (days outside it are counted one by one)
_COUNT_FROM, _COUNT_UNTIL = date(2020, 1, 1), date(2070, 1, 1)


def _secs(t: time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


def parse_office_hours(text: str) -> tuple[tuple[time, time], ...]:
    """Parse ``09:00-12:00,14:00-18:00``."""
    periods = []
    try:
        for part in text.split(","):
            a, b = part.strip().split("-")
            periods.append((time.fromisoformat(a.strip()), time.fromisoformat(b.strip())))
    except ValueError:
        raise CalendarError(f"office hours {text!r}: use HH:MM-HH:MM,HH:MM-HH:MM") from None
    return tuple(periods)
