"""Performance metrics per department and street per month, and the 红黑榜 (domain.md §4).

The formulas are pure functions over plain facts (tested on hand-computed
data); :func:`monthly_ranking` gathers the facts from the SLA clocks and the
feedback log.  Definitions where domain.md leaves room:

* A clock *falls in* the month of its deadline; clocks still running whose
  deadline has not passed yet are not counted.  Clocks cancelled by a
  reassignment (改派) are not the department's: a mis-dispatch counts against
  the dispatcher.
* 挂账 clocks (ever put on hold) are counted apart: out of the resolve and
  close denominators.
* A department's *sign* stage is 签收; a street's is its triage (研判).
* Satisfaction counts ratings given in the month to calls the unit worked on.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from engine.clock import SHANGHAI
from engine.models import AuditEvent, SlaClock

from .models import Call, OrgUnit

WEIGHTS = {"on_time_sign": 30, "on_time_resolve": 35, "satisfaction": 35}
SIGN_STAGE = {"department": "sign", "street": "triage"}
LATE_FACTOR = 3.0  # Amsterdam Signals flags 3x late; 黑榜 for any item over 3x its limit


@dataclass(frozen=True)
class ClockFact:
    unit: str
    stage: str
    due_at: datetime
    stopped_at: datetime | None
    outcome: str | None  # met, late, cancelled, or None while running/paused
    on_hold: bool  # 挂账 at some point
    round: int
    used_ratio: float  # time used / limit (in the target's kind of time)


@dataclass
class UnitMetrics:
    unit: str
    name: str = ""
    kind: str = ""
    should_sign: int = 0
    signed_on_time: int = 0
    should_resolve: int = 0
    resolved_on_time: int = 0
    closed: int = 0
    on_hold: int = 0
    rated: int = 0
    satisfied: int = 0
    reworked: int = 0
    overdue: int = 0
    overtime_factor: float | None = None
    worst_factor: float | None = None
    on_time_sign: float | None = None
    on_time_resolve: float | None = None
    close_rate: float | None = None
    satisfaction: float | None = None
    rework_rate: float | None = None
    score: float | None = None
    flags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def unit_metrics(unit: str, kind: str, clocks: Iterable[ClockFact], ratings: Iterable[str], *,
                 now: datetime, count_basic_as_satisfied: bool = True) -> UnitMetrics:
    """The month's metrics of one unit from its clocks (already limited to the month) and ratings."""
    m = UnitMetrics(unit=unit, kind=kind)
    sign_stage = SIGN_STAGE.get(kind, "sign")
    factors = []
    for c in clocks:
        if c.outcome == "cancelled":
            continue
        due_passed = c.due_at <= now or c.stopped_at is not None
        if not due_passed:
            continue
        late = c.outcome == "late" or (c.outcome is None and c.due_at <= now)
        if late:
            m.overdue += 1
        if c.stage == sign_stage:
            m.should_sign += 1
            m.signed_on_time += c.outcome == "met"
        elif c.stage == "resolve":
            if c.on_hold:
                m.on_hold += 1
                continue
            m.should_resolve += 1
            m.resolved_on_time += c.outcome == "met"
            if c.outcome in ("met", "late"):
                m.closed += 1
                m.reworked += c.round > 1
                factors.append(c.used_ratio)
    good = ("satisfied", "basically_satisfied") if count_basic_as_satisfied else ("satisfied",)
    for rating in ratings:
        m.rated += 1
        m.satisfied += rating in good
    m.on_time_sign = _rate(m.signed_on_time, m.should_sign)
    m.on_time_resolve = _rate(m.resolved_on_time, m.should_resolve)
    m.close_rate = _rate(m.closed, m.should_resolve)
    m.satisfaction = _rate(m.satisfied, m.rated)
    m.rework_rate = _rate(m.reworked, m.closed)
    if factors:
        m.overtime_factor = sum(factors) / len(factors)
        m.worst_factor = max(factors)
    parts = [(WEIGHTS[k], getattr(m, k)) for k in WEIGHTS if getattr(m, k) is not None]
    if parts:
        m.score = round(100 * sum(w * v for w, v in parts) / sum(w for w, _ in parts), 1)
    if m.worst_factor is not None and m.worst_factor > LATE_FACTOR:
        m.flags.append(f"over {LATE_FACTOR:g}x its limit")
    return m


def red_black(units: list[UnitMetrics], n: int = 3) -> tuple[list[UnitMetrics], list[UnitMetrics]]:
    """红榜: the top n by score with nothing overdue.  黑榜: the bottom n, plus any unit flagged."""
    scored = sorted((u for u in units if u.score is not None), key=lambda u: (-u.score, u.unit))
    red = [u for u in scored if u.overdue == 0 and not u.flags][:n]
    bottom = list(reversed(scored))[:n]
    black = bottom + [u for u in scored if u.flags and u not in bottom]
    black = [u for u in black if u not in red]
    return red, black


# ---- gathering facts -----------------------------------------------------------------------------

def month_bounds(month: str) -> tuple[datetime, datetime]:
    try:
        first = date.fromisoformat(month + "-01")
    except ValueError:
        raise ValueError(f"not a month: {month!r} (example: 2026-10)") from None
    nxt = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    return (datetime.combine(first, datetime.min.time(), SHANGHAI),
            datetime.combine(nxt, datetime.min.time(), SHANGHAI))


@dataclass
class Ranking:
    month: str
    kind: str
    units: list[UnitMetrics]
    red: list[UnitMetrics]
    black: list[UnitMetrics]


def monthly_ranking(session: Session, month: str, kind: str, *, now: datetime, calendar,
                    top: int = 3) -> Ranking:
    """Metrics of every department (or street) for ``month`` and its 红黑榜."""
    from engine.calendar import Target

    start, end = month_bounds(month)
    units = {u.code: u for u in session.scalars(select(OrgUnit).where(OrgUnit.kind == kind, OrgUnit.active))}
    clocks = session.scalars(select(SlaClock).where(
        SlaClock.unit.in_(units), SlaClock.due_at >= start, SlaClock.due_at < end)).all()
    facts: dict[str, list[ClockFact]] = defaultdict(list)
    for c in clocks:
        target = Target(c.target_kind, c.target_amount)
        limit = calendar.elapsed(c.started_at, c.due_at, target).total_seconds() or 1.0
        used = calendar.elapsed(c.started_at, c.stopped_at or now, target).total_seconds() - c.paused_seconds
        facts[c.unit].append(ClockFact(c.unit, c.stage, c.due_at, c.stopped_at, c.outcome,
                                       c.paused_seconds > 0 or c.state == "paused", c.round, used / limit))
    ratings: dict[str, list[str]] = defaultdict(list)
    rated = session.execute(
        select(AuditEvent.detail, Call.instance_id, Call.street_code)
        .join(Call, and_(Call.number == AuditEvent.subject, Call.parent_id.is_(None)))
        .where(AuditEvent.action == "feedback.rate", AuditEvent.occurred_at >= start,
               AuditEvent.occurred_at < end)).all()
    if rated:
        worked = defaultdict(set)
        for inst, unit in session.execute(select(SlaClock.instance_id, SlaClock.unit).where(
                SlaClock.instance_id.in_({r[1] for r in rated}), SlaClock.stage == "resolve").distinct()):
            worked[inst].add(unit)
        for detail, inst, street in rated:
            satisfaction = (detail or {}).get("satisfaction")
            for unit in (worked[inst] if kind == "department" else {street}):
                if unit in units:
                    ratings[unit].append(satisfaction)
    metrics = []
    for code, unit in units.items():
        m = unit_metrics(code, kind, facts.get(code, []), ratings.get(code, []), now=now)
        m.name = unit.name
        metrics.append(m)
    metrics.sort(key=lambda u: (u.score is None, -(u.score or 0), u.unit))
    red, black = red_black(metrics, top)
    return Ranking(month, kind, metrics, red, black)


# ---- the supervisors' dashboard ------------------------------------------------------------------

@dataclass
class Dashboard:
    now: datetime
    month: str
    overdue_total: int
    overdue_by_street: dict[str, int]
    overdue_by_department: dict[str, int]
    warnings_today: list[dict]  # running clocks whose deadline falls later today
    month_totals: dict[str, float | int | None]  # district-wide on-time sign/resolve, satisfaction...
    trend: list[dict]  # per day: filed, closed, breached


def dashboard(session: Session, *, now: datetime, calendar, days: int = 30) -> Dashboard:
    """What a supervisor looks at first: overdue work by street and department, today's deadlines,
    this month's rates and the last ``days`` days' trend."""
    from datetime import timedelta

    from sqlalchemy import func

    from engine.models import SlaEvent

    local = now.astimezone(SHANGHAI)
    month = f"{local:%Y-%m}"
    overdue_rows = session.execute(
        select(Call.street_code, SlaClock.unit, OrgUnit.kind, func.count())
        .join(Call, Call.instance_id == SlaClock.instance_id)
        .join(OrgUnit, OrgUnit.code == SlaClock.unit)
        .where(SlaClock.state == "running", SlaClock.due_at <= now)
        .group_by(Call.street_code, SlaClock.unit, OrgUnit.kind)).all()
    by_street: dict[str, int] = defaultdict(int)
    by_department: dict[str, int] = defaultdict(int)
    for street, unit, kind, n in overdue_rows:
        by_street[street] += n
        if kind == "department":
            by_department[unit] += n
    end_of_day = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), SHANGHAI)
    today = session.execute(
        select(SlaClock, Call.number).join(Call, Call.instance_id == SlaClock.instance_id)
        .where(SlaClock.state == "running", SlaClock.due_at > now, SlaClock.due_at < end_of_day)
        .order_by(SlaClock.due_at).limit(100)).all()
    warnings = [{"call": number, "unit": c.unit, "stage": c.stage, "due_at": c.due_at, "work_item_id": c.work_item_id,
                 "warned": c.warned_at is not None} for c, number in today]
    departments = monthly_ranking(session, month, "department", now=now, calendar=calendar)
    streets = monthly_ranking(session, month, "street", now=now, calendar=calendar)

    def total(units, attr):
        return sum(getattr(u, attr) for u in units)

    d, s = departments.units, streets.units
    totals = {"should_sign": total(d, "should_sign"), "signed_on_time": total(d, "signed_on_time"),
              "should_resolve": total(d, "should_resolve"), "resolved_on_time": total(d, "resolved_on_time"),
              "rated": total(s, "rated"), "satisfied": total(s, "satisfied")}
    totals["on_time_sign"] = _rate(totals["signed_on_time"], totals["should_sign"])
    totals["on_time_resolve"] = _rate(totals["resolved_on_time"], totals["should_resolve"])
    totals["satisfaction"] = _rate(totals["satisfied"], totals["rated"])
    start_day = local.date() - timedelta(days=days - 1)
    since = datetime.combine(start_day, datetime.min.time(), SHANGHAI)
    series = {start_day + timedelta(days=i): {"filed": 0, "closed": 0, "breached": 0} for i in range(days)}

    def count(column, where, key):
        for (moment,) in session.execute(select(column).where(column >= since, *where)):
            day = moment.astimezone(SHANGHAI).date()
            if day in series:
                series[day][key] += 1

    count(Call.created_at, [Call.parent_id.is_(None)], "filed")
    count(Call.closed_at, [Call.parent_id.is_(None), Call.status == "closed"], "closed")
    count(SlaEvent.occurred_at, [SlaEvent.kind == "urge", SlaEvent.actor == "scheduler"], "breached")
    trend = [{"day": day.isoformat(), **values} for day, values in sorted(series.items())]
    return Dashboard(now, month, sum(by_street.values()), dict(by_street), dict(by_department), warnings, totals,
                     trend)
