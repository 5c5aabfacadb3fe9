"""Metric formulas on hand-computed data, and the ranking from real clocks."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from engine.clock import SHANGHAI
from workflows.metrics import ClockFact, UnitMetrics, month_bounds, red_black, unit_metrics

NOW = datetime(2026, 11, 1, 9, tzinfo=SHANGHAI)


def due(day, hour=18):
    return datetime(2026, 10, day, hour, tzinfo=SHANGHAI)


def fact(stage, day, outcome, *, on_hold=False, rnd=1, ratio=0.5, stopped=True):
    return ClockFact("water", stage, due(day), due(day) - timedelta(hours=1) if stopped else None, outcome,
                     on_hold, rnd, ratio)


def test_department_formulas_by_hand():
    clocks = [
        fact("sign", 5, "met"), fact("sign", 6, "met"), fact("sign", 7, "late"), fact("sign", 8, "met"),
        fact("sign", 9, "cancelled"),                      # reassigned: not the department's
        fact("resolve", 12, "met", ratio=0.6),
        fact("resolve", 13, "late", ratio=1.5),
        fact("resolve", 14, "met", rnd=2, ratio=0.9),      # a rework round
        fact("resolve", 15, None, stopped=False),          # still open, past due: late, not closed
        fact("resolve", 16, "met", on_hold=True),          # 挂账: counted apart
    ]
    ratings = ["satisfied", "basically_satisfied", "unsatisfied", "satisfied"]
    m = unit_metrics("water", "department", clocks, ratings, now=NOW)
    assert (m.should_sign, m.signed_on_time, m.on_time_sign) == (4, 3, 0.75)
    assert (m.should_resolve, m.resolved_on_time, m.on_time_resolve) == (4, 2, 0.5)
    assert (m.closed, m.close_rate) == (3, 0.75)
    assert (m.on_hold, m.overdue) == (1, 3)  # late sign, late resolve, the open one
    assert (m.rated, m.satisfied, m.satisfaction) == (4, 3, 0.75)
    assert m.rework_rate == pytest.approx(1 / 3)
    assert m.overtime_factor == pytest.approx((0.6 + 1.5 + 0.9) / 3) and m.worst_factor == 1.5
    assert m.score == pytest.approx(round(100 * (30 * 0.75 + 35 * 0.5 + 35 * 0.75) / 100, 1))


def test_basically_satisfied_is_a_setting():
    m = unit_metrics("water", "department", [], ["satisfied", "basically_satisfied"], now=NOW,
                     count_basic_as_satisfied=False)
    assert m.satisfaction == 0.5


def test_not_yet_due_clocks_do_not_count_and_streets_sign_by_triage():
    clocks = [ClockFact("xiagang", "triage", datetime(2026, 11, 3, 18, tzinfo=SHANGHAI), None, None, False, 1, 0),
              ClockFact("xiagang", "triage", due(3), due(3), "met", False, 1, 0.4)]
    m = unit_metrics("xiagang", "street", clocks, [], now=NOW)
    assert (m.should_sign, m.on_time_sign, m.score) == (1, 1.0, 100.0)


def test_three_times_over_the_limit_puts_a_unit_on_the_black_list():
    a = unit_metrics("a", "department", [fact("resolve", 5, "met")], [], now=NOW)
    b = unit_metrics("b", "department", [fact("resolve", 5, "late", ratio=3.5)], [], now=NOW)
    c = unit_metrics("c", "department", [fact("resolve", 5, "met"), fact("sign", 6, "late")], [], now=NOW)
    red, black = red_black([a, b, c], n=1)
    assert [u.unit for u in red] == ["a"]
    assert [u.unit for u in black] == ["b"] and b.flags == ["over 3x its limit"]


def test_red_list_requires_nothing_overdue():
    units = [UnitMetrics("x", score=99.0, overdue=1), UnitMetrics("y", score=80.0), UnitMetrics("z", score=10.0)]
    red, black = red_black(units, n=1)
    assert [u.unit for u in red] == ["y"] and [u.unit for u in black] == ["z"]


def test_month_bounds():
    start, end = month_bounds("2026-12")
    assert (start.month, end.year, end.month) == (12, 2027, 1)
    with pytest.raises(ValueError):
        month_bounds("October")


def test_scenario_2_the_late_department_shows_as_overdue_in_the_ranking(district, db_url):
    from click.testing import CliRunner

    from web.cli import main

    d = district
    slow = d.file("qingnian.grid", category="road_flooding")
    quick = d.file("qingnian.grid", category="power_outage")
    d.do(slow, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    d.do(quick, "xiagang.dispatcher", "dispatch", {"lead": "power"})
    d.do(slow, "water.staff", "sign")
    d.do(quick, "power.staff", "sign")
    d.do(quick, "power.staff", "done", {"result": "已恢复供电"})
    d.do(quick, "qingnian.grid", "pass")
    d.do(quick, "xiagang.dispatcher", "rate", {"satisfaction": "satisfied", "resolved": True})
    d.advance_to(datetime(2026, 10, 27, 9, tzinfo=SHANGHAI))  # warning, breach, then 督办
    env = {"HUYING_DATABASE_URL": db_url, "HUYING_CLOCK": "virtual"}
    CliRunner().invoke(main, ["clock", "set", "2026-10-27T09:00"], env=env)
    result = CliRunner().invoke(main, ["report", "ranking", "--month", "2026-10", "--json"], env=env)
    assert result.exit_code == 0, result.output
    ranking = json.loads(result.stdout)
    units = {u["unit"]: u for u in ranking["units"]}
    assert units["water"]["overdue"] == 1 and units["water"]["on_time_resolve"] == 0.0
    assert units["power"]["on_time_resolve"] == 1.0 and units["power"]["satisfaction"] == 1.0
    assert "power" in ranking["red"] and "water" in ranking["black"]
    text = CliRunner().invoke(main, ["report", "ranking", "--month", "2026-10"], env=env).stdout
    assert "红榜" in text and "黑榜" in text and "water" in text
