"""SLA clocks on the business calendar: policy, start/pause/resume/stop, and the scheduler's sweep.

A clock runs per (instance, stage, responsible unit, round).  Which human tasks
are timed, and for which stage, is said by the diagram (the ``sla_stage``
property of a task; ``sla_pause`` names the actions that pause rather than
stop the clock, e.g. 挂账).  The targets come from the versioned SLA policy.
A warning, breach or overdue is delivered into the process as a BPMN signal on
the timed task, so the diagram decides what happens next.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time as _time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import bindparam, event, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.exc import StaleDataError

from .audit import defer_insert, defer_until_commit, record_audit
from .calendar import PACKAGE_YEARS, BusinessCalendar, CalendarError, Target, parse_office_hours
from .clock import Clock
from .db import attach, held
from .errors import StaleInstance, ValidationFailed, msg
from .models import CalendarOverride, CalendarRevision, Incident, SlaClock, SlaEvent, SlaPolicy, WorkItem

log = logging.getLogger(__name__)

EVENTS = (("warning", "warn_at", "warned_at", "sla_warning"),
          ("urge", "due_at", "breached_at", "sla_breach"),
          ("supervise", "overdue_at", "overdue_fired_at", "sla_overdue"))
MATCH_KEYS = ("stage", "category", "sla_class", "urgency")


# ---- policy ---------------------------------------------------------------------------------------
class _TargetSchema(Schema):
    working_hours = fields.Float(validate=validate.Range(min=0.01, max=10000))
    working_days = fields.Integer(strict=True, validate=validate.Range(min=1, max=365))
    wall_hours = fields.Float(validate=validate.Range(min=0.01, max=10000))

    @validates_schema
    def _one(self, data, **_):
        if len(data) != 1:
            raise ValidationError(msg("give exactly one of working_hours, working_days, wall_hours"))


class _RuleSchema(Schema):
    match = fields.Dict(keys=fields.String(validate=validate.OneOf(MATCH_KEYS)), values=fields.String(),
                        required=True)
    target = fields.Nested(_TargetSchema, required=True)
    warn_ratio = fields.Float(validate=validate.Range(min=0.05, max=0.99))
    overdue_working_days = fields.Integer(strict=True, validate=validate.Range(min=1, max=60))
    note = fields.String(load_default="")

    @validates_schema
    def _stage(self, data, **_):
        if "stage" not in data.get("match", {}):
            raise ValidationError(msg("every rule must match a stage"), "match")


class PolicySchema(Schema):
    warn_ratio = fields.Float(load_default=0.8, validate=validate.Range(min=0.05, max=0.99))
    overdue_working_days = fields.Integer(load_default=5, strict=True, validate=validate.Range(min=1, max=60))
    rules = fields.List(fields.Nested(_RuleSchema), required=True, validate=validate.Length(min=1))


@dataclass(frozen=True)
class Rule:
    target: Target
    warn_ratio: float
    overdue_working_days: int


def validate_policy(document: Mapping) -> dict:
    """Validate a policy document; raises :class:`ValidationFailed` naming the rule and field."""
    try:
        return PolicySchema().load(document)
    except ValidationError as exc:
        raise ValidationFailed(msg("invalid SLA policy: %(errors)s", errors=exc.messages),
                               field_errors={k: [str(v)] for k, v in exc.messages.items()}) from None


def match_rule(policy: Mapping, facts: Mapping[str, str]) -> Rule | None:
    """The most specific rule whose every match key equals the fact (ties: the first listed)."""
    best, best_score = None, -1
    for rule in policy["rules"]:
        conditions = rule["match"]
        if all(facts.get(k) == v for k, v in conditions.items()) and len(conditions) > best_score:
            best, best_score = rule, len(conditions)
    if best is None:
        return None
    (kind, amount), = best["target"].items()
    return Rule(Target(kind, amount), best.get("warn_ratio", policy["warn_ratio"]),
                best.get("overdue_working_days", policy["overdue_working_days"]))


def deploy_policy(session: Session, document: Mapping, *, at: datetime, actor: str, note: str = "") -> SlaPolicy:
    """Store a new policy version (an identical latest version is returned unchanged)."""
    policy = validate_policy(document)
    digest = hashlib.sha256(json.dumps(policy, sort_keys=True).encode()).hexdigest()
    latest = latest_policy(session)
    if latest is not None and latest.sha256 == digest:
        return latest
    version = (session.scalar(select(func.max(SlaPolicy.version))) or 0) + 1
    row = SlaPolicy(version=version, sha256=digest, rules=policy, deployed_at=at, deployed_by=actor, note=note)
    session.add(row)
    session.flush()
    global _POLICY_GENERATION
    _POLICY_GENERATION += 1  # keepers in this process look again at once; others within their ttl
    record_audit(session, at=at, actor=actor, action="sla_policy.deployed", new={"version": version}, detail={"note": note})
    return row


_POLICY_GENERATION = 0


def latest_policy(session: Session) -> SlaPolicy | None:
    return session.scalar(select(SlaPolicy).order_by(SlaPolicy.version.desc()).limit(1))


# ---- calendar ---------------------------------------------------------------------------------------
def load_calendar_file(path) -> tuple[str | None, dict[date, bool]]:
    """Read ``{"office_hours": "09:00-12:00,14:00-18:00", "overrides": {"2027-01-01": {"workday": false}}}``."""
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        return None, {}
    doc = json.loads(p.read_text(encoding="utf-8"))
    overrides = {}
    for day, spec in (doc.get("overrides") or {}).items():
        try:
            overrides[date.fromisoformat(day)] = bool(spec["workday"] if isinstance(spec, dict) else spec)
        except (ValueError, KeyError, TypeError):
            raise CalendarError(f"{path}: bad override {day!r}: use \"YYYY-MM-DD\": {{\"workday\": true|false}}") from None
    return doc.get("office_hours"), overrides


class CalendarProvider:
    """The business calendar of this process: file overrides, then database overrides (they win).

    Reloaded when the database revision changes, checked at most once per ``ttl`` seconds.
    """

    def __init__(self, office_hours: str | None = None, file_overrides: Mapping[date, bool] | None = None,
                 ttl: float = 1.0):
        self.office = parse_office_hours(office_hours) if office_hours else None
        self.file_overrides = dict(file_overrides or {})
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[int, BusinessCalendar] | None = None
        self._checked = 0.0

    def _build(self, db_overrides: Mapping[date, bool]) -> BusinessCalendar:
        kwargs = {"overrides": {**self.file_overrides, **db_overrides}}
        if self.office:
            kwargs["office_hours"] = self.office
        return BusinessCalendar(**kwargs)

    def get(self, session: Session, fresh: bool = False) -> BusinessCalendar:
        now = _time.monotonic()
        cached = self._cached
        if cached is not None and not fresh and now - self._checked < self.ttl:
            return cached[1]
        revision = session.scalar(select(CalendarRevision.revision).where(CalendarRevision.id == 1)) or 0
        if cached is not None and cached[0] == revision and not fresh:
            self._checked = now
            return cached[1]
        rows = session.execute(select(CalendarOverride.day, CalendarOverride.workday)).all()
        calendar = self._build({d: w for d, w in rows})
        with self._lock:
            self._cached, self._checked = (revision, calendar), now
        return calendar


def set_override(session: Session, day: date, workday: bool | None, *, actor: str, at: datetime,
                 note: str = "") -> None:
    """Set (or with ``workday=None`` remove) an administrator override; bumps the calendar revision."""
    row = session.get(CalendarOverride, day)
    old = {"workday": row.workday, "note": row.note} if row else None
    if workday is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(CalendarOverride(day=day, workday=workday, note=note, set_by=actor, set_at=at))
    else:
        row.workday, row.note, row.set_by, row.set_at = workday, note, actor, at
    rev = session.get(CalendarRevision, 1)
    if rev is None:
        session.add(CalendarRevision(id=1, revision=1))
    else:
        rev.revision += 1
    session.flush()
    record_audit(session, at=at, actor=actor, action="calendar.override", old=old,
                 new={"workday": workday, "note": note} if workday is not None else None,
                 detail={"day": day.isoformat()})


# ---- clocks -------------------------------------------------------------------------------------------
def _target(c: SlaClock) -> Target:
    return Target(c.target_kind, c.target_amount)


def _plan(c: SlaClock, calendar: BusinessCalendar) -> None:
    """(Re)compute warn/due/overdue from the start, the target, paused time and extensions."""
    target = _target(c)
    base = calendar.deadline(c.started_at, target)
    due = base.due
    if c.extension_days:
        due = calendar.add_working_days(due, c.extension_days).due
    warn = calendar.fraction_of(c.started_at, base.due, target, c.warn_ratio)
    if c.shift_seconds:
        shift = timedelta(seconds=c.shift_seconds)
        due = calendar.shift(due, shift, target)
        warn = calendar.shift(warn, shift, target)
    overdue = calendar.add_working_days(due, c.overdue_working_days)
    c.due_at, c.warn_at, c.overdue_at = due, warn, overdue.due
    c.assumed_calendar = bool(base.assumed or overdue.assumed)
    _schedule(c)


def _schedule(c: SlaClock, retry_at: datetime | None = None) -> None:
    if c.state != "running":
        c.next_fire_at = None
        return
    pending = [getattr(c, at) for _k, at, fired, _e in EVENTS if getattr(c, fired) is None]
    nxt = min(pending) if pending else None
    if retry_at is not None:
        nxt = retry_at
    c.next_fire_at = nxt


def remaining_time(c: SlaClock, calendar: BusinessCalendar, now: datetime) -> timedelta:
    """Working (or wall) time left until the deadline; negative when overdue."""
    target = _target(c)
    if now <= c.due_at:
        return calendar.elapsed(now, c.due_at, target)
    return -calendar.elapsed(c.due_at, now, target)


_CLOCKS_OF_INSTANCE = (select(SlaClock).where(SlaClock.instance_id == bindparam("instance"))
                      .order_by(SlaClock.round))  # built once: every step runs it


# ---- an instance's clocks, kept from one step to the next ---------------------------------------------
class ClockCache:
    """The committed clocks of recently stepped instances (their column values), to skip reading them.

    An entry is used only if it matches the fingerprint of the instance's clocks that the action's
    own query read (:func:`clock_fingerprint`: how many, the highest id, the sum of their lock
    versions).  Clocks are never deleted and every change bumps a lock version, so any clock added
    or changed since, in this process or another (the scheduler), changes the fingerprint, and the
    clocks are read again.  An entry is taken out when used, as :class:`engine.runtime.WorkflowCache`.
    """

    def __init__(self, size: int = 4096):
        self.size = size
        self._items: dict[int, tuple[tuple, list[dict]]] = {}
        self._lock = threading.Lock()

    def take(self, instance_id: int) -> tuple[tuple, list[dict]] | None:
        with self._lock:
            return self._items.pop(instance_id, None)

    def put(self, instance_id: int, fingerprint: tuple, rows: list[dict]) -> None:
        with self._lock:
            self._items.pop(instance_id, None)
            self._items[instance_id] = (fingerprint, rows)
            while len(self._items) > self.size:
                del self._items[next(iter(self._items))]  # the oldest

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


CLOCK_CACHE = ClockCache()
_FINGERPRINTS = "huying.clock_fingerprints"  # session.info: instance id -> fingerprint read by the action
_KEPT = "huying.kept_clocks"  # session.info: instance id -> every clock of the instance, as synced here
_CLOCK_COLUMNS = tuple(prop.key for prop in SlaClock.__mapper__.column_attrs)


def clock_fingerprint(instance_id_column) -> list:
    """Columns to add to a query that reads an instance: the fingerprint of its clocks (see :class:`ClockCache`)."""
    c = SlaClock.__table__.alias("fingerprinted_clock")
    where = c.c.instance_id == instance_id_column
    return [select(func.count()).where(where).scalar_subquery(),
            select(func.max(c.c.id)).where(where).scalar_subquery(),
            select(func.sum(c.c.lock_version)).where(where).scalar_subquery()]


def note_clock_fingerprint(session: Session, instance_id: int, fingerprint: tuple) -> None:
    session.info.setdefault(_FINGERPRINTS, {})[instance_id] = tuple(int(v or 0) for v in fingerprint)


def _fingerprint_of(rows: list[dict]) -> tuple:
    return (len(rows), max((r["id"] for r in rows), default=0), sum(r["lock_version"] for r in rows))


def _clocks_of(session: Session, instance_id: int) -> list[SlaClock | dict]:
    """Every clock of the instance, from :data:`CLOCK_CACHE` when it is current, else read.

    A cached clock comes as its committed column values (a dict) unless this session already holds
    its object; :meth:`_Clocks.obj` makes an object of it when a step changes it (most steps change one
    or two of an instance's clocks and only read the others).
    """
    fingerprint = session.info.get(_FINGERPRINTS, {}).pop(instance_id, None)
    if fingerprint is not None:
        if fingerprint[0] == 0:
            return []
        entry = CLOCK_CACHE.take(instance_id)
        if entry is not None and entry[0] == fingerprint:
            return [held(session, SlaClock, row["id"]) or row for row in entry[1]]
    return list(session.scalars(_CLOCKS_OF_INSTANCE, {"instance": instance_id}))


class _Clocks:
    """An instance's clocks for one sync: read as they are, made objects only to be changed."""

    def __init__(self, session: Session, clocks: list[SlaClock | dict]):
        self.session = session
        self.items = clocks

    @staticmethod
    def get(c: SlaClock | dict, key: str):
        return c[key] if type(c) is dict else getattr(c, key)

    def obj(self, index: int) -> SlaClock:
        c = self.items[index]
        if type(c) is dict:
            c = self.items[index] = attach(self.session, SlaClock, c)
        return c


@event.listens_for(Session, "after_commit")
def _keep_committed_clocks(session):
    for instance_id, clocks in session.info.pop(_KEPT, {}).items():
        rows = []
        for c in clocks:
            if type(c) is dict:  # unchanged here, unless other code of the transaction loaded and changed it
                current = held(session, SlaClock, c["id"])
                if current is None:
                    rows.append(c)
                    continue
                c = current
            values = instance_state(c).dict
            if any(key not in values for key in _CLOCK_COLUMNS) or values["id"] is None:
                break  # expired or never written: not known as committed
            rows.append({key: values[key] for key in _CLOCK_COLUMNS})
        else:
            if rows:
                rows.sort(key=lambda r: r["round"])
                CLOCK_CACHE.put(instance_id, _fingerprint_of(rows), rows)


@event.listens_for(Session, "after_rollback")
def _forget_clocks(session):
    session.info.pop(_KEPT, None)
    session.info.pop(_FINGERPRINTS, None)


class SlaKeeper:
    """Keeps the clocks of an instance in step with its work items, inside the caller's transaction."""

    def __init__(self, calendars: CalendarProvider, ttl: float = 1.0):
        self.calendars = calendars
        self.ttl = ttl
        self._policies: dict[int, dict] = {}
        self._latest: tuple[float, int, int | None] | None = None

    def policy(self, session: Session) -> tuple[int, dict] | None:
        """The latest policy version (checked at most once per ``ttl`` seconds; rules cached per version)."""
        now = _time.monotonic()
        if self._latest is not None and now - self._latest[0] < self.ttl and self._latest[1] == _POLICY_GENERATION:
            version = self._latest[2]
        else:
            version = session.scalar(select(func.max(SlaPolicy.version)))
            self._latest = (now, _POLICY_GENERATION, version)
        if version is None:
            return None
        rules = self._policies.get(version)
        if rules is None:
            rules = session.scalar(select(SlaPolicy.rules).where(SlaPolicy.version == version))
            self._policies[version] = rules
        return version, rules

    def sync(self, session: Session, *, instance_id: int, subject: str, opened: Iterable[WorkItem],
             closed: Iterable[WorkItem], facts: Mapping[str, str], now: datetime, actor: str,
             new_instance: bool = False) -> None:
        """Start, pause, resume or stop clocks for the work items one step opened and closed.

        ``new_instance``: the step started the instance, so it has no clocks yet (nothing to read).
        """
        closed = [wi for wi in closed if (wi.properties or {}).get("sla_stage")]
        opened = [wi for wi in opened if (wi.properties or {}).get("sla_stage")]
        if not closed and not opened:
            return
        calendar = self.calendars.get(session)
        # every clock of the instance in one query (a call has a few dozen at most), or from the cache
        clocks = _Clocks(session, [] if new_instance else _clocks_of(session, instance_id))
        session.info.setdefault(_KEPT, {})[instance_id] = clocks.items  # (published to CLOCK_CACHE once committed)
        get = clocks.get
        by_item = {get(c, "work_item_id"): i for i, c in enumerate(clocks.items) if get(c, "state") == "running"}
        for wi in closed:
            i = by_item.get(wi.id)
            if i is None:
                continue
            c = clocks.obj(i)
            pause_on = [a.strip() for a in wi.properties.get("sla_pause", "").split(",") if a.strip()]
            if wi.state == "completed" and wi.action in pause_on:
                c.state, c.paused_at, c.next_fire_at = "paused", now, None
                continue
            c.state, c.stopped_at, c.next_fire_at = "stopped", now, None
            if wi.state == "completed":
                c.outcome = "met" if now <= c.due_at else "late"
            else:
                c.outcome = "late" if c.breached_at else "cancelled"
        if not opened:
            return
        # ordered by round: the last one wins
        latest = {(get(c, "stage"), get(c, "unit")): i for i, c in enumerate(clocks.items)}
        policy = None
        for wi in opened:
            stage, unit = wi.properties["sla_stage"], wi.owner_unit or ""
            at = latest.get((stage, unit))
            previous = None if at is None else clocks.items[at]
            if previous is not None and get(previous, "state") == "paused":
                previous = clocks.obj(at)
                paused = calendar.elapsed(previous.paused_at, now, _target(previous))
                previous.paused_seconds += paused.total_seconds()
                previous.shift_seconds += paused.total_seconds()
                previous.state, previous.paused_at, previous.work_item = "running", None, wi
                _plan(previous, calendar)
                wi.due_at = previous.due_at
                continue
            if previous is not None and get(previous, "state") == "running":
                previous = clocks.obj(at)
                previous.work_item = wi
                wi.due_at = previous.due_at
                continue
            policy = policy or self.policy(session)
            if policy is None:
                log.warning("no SLA policy deployed: %s %s is not timed", subject, stage)
                continue
            rule = match_rule(policy[1], {**facts, "stage": stage})
            if rule is None:
                continue
            c = SlaClock(instance_id=instance_id, subject=subject, stage=stage, unit=unit, work_item=wi,
                         round=(get(previous, "round") + 1) if previous is not None else 1, state="running",
                         target_kind=rule.target.kind, target_amount=rule.target.amount, warn_ratio=rule.warn_ratio,
                         overdue_working_days=rule.overdue_working_days, policy_version=policy[0], started_at=now,
                         shift_seconds=0.0, paused_seconds=0.0, extension_days=0, attempts=0)
            _plan(c, calendar)
            session.add(c)
            clocks.items.append(c)
            latest[(stage, unit)] = len(clocks.items) - 1
            wi.due_at = c.due_at
            if c.assumed_calendar:
                log.warning("%s %s: deadline %s (overdue escalation %s) rests on days beyond the official "
                            "holiday data (to the end of %d): weekdays assumed to be workdays",
                            subject, stage, c.due_at.isoformat(), c.overdue_at.isoformat(), PACKAGE_YEARS[1])
                record_audit(session, at=now, actor="calendar", action="calendar.assumed", subject=subject,
                             detail={"stage": stage, "unit": unit, "due_at": c.due_at.isoformat(),
                                     "message": "beyond the holiday data: weekdays assumed to be workdays"})

    def extend(self, session: Session, *, instance_id: int, stage: str, unit: str, working_days: int,
               now: datetime) -> SlaClock | None:
        """An approved extension: the running (or paused) clock's deadline moves by N working days."""
        c = session.scalars(select(SlaClock).where(
            SlaClock.instance_id == instance_id, SlaClock.stage == stage, SlaClock.unit == unit,
            SlaClock.state.in_(("running", "paused"))).order_by(SlaClock.round.desc()).limit(1)).first()
        if c is None:
            return None
        c.extension_days += working_days
        state = c.state
        _plan(c, self.calendars.get(session))
        if state == "paused":
            c.next_fire_at = None
        if c.work_item_id is not None:
            session.execute(update(WorkItem).where(WorkItem.id == c.work_item_id).values(due_at=c.due_at))
        return c

    def recompute_open(self, session: Session) -> int:
        """After a calendar change: recompute every open clock's deadlines on the new calendar."""
        calendar = self.calendars.get(session, fresh=True)
        n = 0
        for c in session.scalars(select(SlaClock).where(SlaClock.state.in_(("running", "paused")))):
            state = c.state
            _plan(c, calendar)
            if state == "paused":
                c.next_fire_at = None
            if c.work_item_id is not None:
                session.execute(update(WorkItem).where(WorkItem.id == c.work_item_id).values(due_at=c.due_at))
            n += 1
        session.flush()
        return n


def _record_event(session: Session, c: SlaClock, kind: str, *, scheduled_for: datetime | None, now: datetime,
                  actor: str, note: str = "") -> None:
    """Append one 预警/催办/督办 event of a clock, written with the step (read only after it, as the audit log)."""
    defer_insert(session, SlaEvent.__table__, {
        "clock_id": c.id, "kind": kind, "subject": c.subject, "stage": c.stage, "unit": c.unit,
        "scheduled_for": scheduled_for, "occurred_at": now, "recorded_at": datetime.now(UTC), "actor": actor,
        "note": note})


def record_manual_event(session: Session, c: SlaClock, kind: str, *, now: datetime, actor: str,
                        note: str = "") -> str | None:
    """A supervisor's 催办 (``urge``) or 督办 (``supervise``) on a clock.

    Returns the process signal to deliver, if any: a 督办 on a breached clock
    whose automatic 督办 has not fired yet fires it now (``sla_overdue``: the
    diagram escalates), and the scheduler will not fire it again.
    """
    _record_event(session, c, kind, scheduled_for=None, now=now, actor=actor, note=note[:1000])
    if kind == "supervise" and c.state == "running" and c.overdue_fired_at is None and now >= c.due_at:
        if c.breached_at is None:
            c.breached_at = now
        c.overdue_fired_at = now
        _schedule(c)
        return "sla_overdue"
    return None


# ---- the sweep ---------------------------------------------------------------------------------------
# deliver(session, clock, signal, now=the sweep's moment) -> boundary events that caught it; it may have
# a ``prepare(session, clocks)`` attribute, called once per batch before its deliveries (to read ahead)
Deliver = Callable[..., int]


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


BATCH = 16  # due clocks claimed and fired per transaction


def fire_due_clocks(session_factory: Callable[[], Session], clock: Clock, deliver: Deliver, *,
                    limit: int | None = None, batch: int = BATCH) -> int:
    """Fire every warning, breach and overdue that is due, in deadline order; returns how many fired.

    The earliest due clocks are claimed a few at a time (``FOR UPDATE SKIP
    LOCKED`` on PostgreSQL; the clock's version column elsewhere) and fired in
    one small transaction, oldest event first (a clock's warning and its breach
    both, when catching up, if nothing unclaimed is due between them), so two
    schedulers never fire the same event twice and a restarted one catches up
    in deadline order.  If
    anything in a batch fails, the batch is rolled back and its clocks are fired
    one per transaction: a failing clock is recorded as an incident (retried
    with backoff) and never blocks the others.
    """
    fired = 0
    skipped: set[int] = set()
    now = clock.now()
    while limit is None or fired < limit:
        size = batch if limit is None else max(1, min(batch, limit - fired))
        outcome = _fire_batch(session_factory, now, deliver, skipped, size)
        if outcome is None:
            return fired
        fired += outcome
    return fired


def _claim(session: Session, now: datetime, skipped: set[int], size: int, only: int | None = None) -> list[SlaClock]:
    q = select(SlaClock).where(SlaClock.next_fire_at <= now)
    if only is not None:
        q = q.where(SlaClock.id == only)
    elif skipped:
        q = q.where(SlaClock.id.notin_(skipped))
    q = q.order_by(SlaClock.next_fire_at, SlaClock.id).limit(size)
    if session.bind.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    return list(session.scalars(q))


def _fire_clocks(session: Session, clocks: list[SlaClock], now: datetime, until: datetime,
                 deliver: Deliver) -> int:
    """Fire the clocks' events due by ``now`` and scheduled no later than ``until``, oldest first
    across the clocks (a delivery may stop a clock: its later events are then dropped)."""
    due = sorted(((getattr(c, at_attr), c.id, kind, fired_attr, signal, c)
                  for c in clocks for kind, at_attr, fired_attr, signal in EVENTS
                  if getattr(c, fired_attr) is None and getattr(c, at_attr) <= now and getattr(c, at_attr) <= until),
                 key=lambda e: (e[0], e[1]))
    fired = 0
    prepare = getattr(deliver, "prepare", None)
    if prepare is not None and len(due) > 1:
        prepare(session, list({id(c): c for *_e, c in due}.values()))
    for moment, _id, kind, fired_attr, signal, c in due:
        if c.state != "running" or getattr(c, fired_attr) is not None:
            continue
        setattr(c, fired_attr, now)
        if c.attempts or c.last_error is not None:
            c.attempts, c.last_error = 0, None
        _schedule(c)  # before the delivery, so that its flush writes the clock once
        _record_event(session, c, kind, scheduled_for=moment, now=now, actor="scheduler")
        deliver(session, c, signal, now=now)
        fired += 1
    for c in clocks:  # the ones that fired nothing (their next event is after ``until``) are unchanged
        if c.attempts or c.last_error is not None:
            c.attempts, c.last_error = 0, None
        _schedule(c)
    return fired


def _fire_batch(session_factory, now: datetime, deliver: Deliver, skipped: set[int], size: int) -> int | None:
    """Claim up to ``size`` due clocks and fire them in one transaction; None when nothing is due."""
    with session_factory() as session:
        clocks = _claim(session, now, skipped, size)
        if not clocks:
            return None
        defer_until_commit(session)
        ids = [c.id for c in clocks]
        # deadline order across schedulers' batches: every clock not claimed here fires at or after
        # the last claimed one's next event, so only events up to that moment go now
        until = clocks[-1].next_fire_at if len(clocks) == size else now
        try:
            fired = _fire_clocks(session, clocks, now, until, deliver)
            session.commit()
            return fired
        except Exception:  # noqa: BLE001 - retried one by one below, where it is recorded
            session.rollback()
    return sum(_fire_one(session_factory, now, deliver, skipped, clock_id) for clock_id in ids)


def _fire_one(session_factory, now: datetime, deliver: Deliver, skipped: set[int], clock_id: int) -> int:
    """Fire one clock in its own transaction; a failure becomes an incident (or, lost to another
    scheduler, is skipped for this sweep)."""
    with session_factory() as session:
        [c] = _claim(session, now, skipped, 1, only=clock_id) or [None]
        if c is None:
            return 0  # handled meanwhile, or locked by another scheduler
        try:
            fired = _fire_clocks(session, [c], now, c.next_fire_at, deliver)
            session.commit()
            return fired
        except (StaleDataError, StaleInstance):
            session.rollback()  # another scheduler handled it first
            skipped.add(clock_id)
            return 0
        except Exception as exc:  # noqa: BLE001 - recorded as an incident, retried later
            session.rollback()
            log.exception("SLA clock %s failed", clock_id)
            if not _record_incident(session_factory, clock_id, now, exc):
                skipped.add(clock_id)
            return 0


def _record_incident(session_factory, clock_id: int, now: datetime, exc: Exception) -> bool:
    with session_factory() as session:
        c = session.get(SlaClock, clock_id)
        if c is None:
            return False
        c.attempts += 1
        retry = now + _backoff(c.attempts)
        c.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        c.next_fire_at = retry
        session.add(Incident(clock_id=c.id, subject=c.subject, occurred_at=now, error=c.last_error, retry_at=retry))
        try:
            session.commit()
        except StaleDataError:
            session.rollback()
            return False
        return True
