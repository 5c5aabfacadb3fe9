"""督查: the overdue list, and supervisors' 催办 (urge) and 督办 (formal supervision order).

Supervisors read everything and complete nothing: an urge is an event on the
item's SLA clock (it shows on the call's timeline and in the unit's queue), a
督办 on an item past its deadline also fires the process's ``sla_overdue``
event at once (the diagram escalates to the district), instead of waiting the
five working days the policy allows.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from marshmallow import Schema, fields, validate
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.audit import record_audit, write_deferred
from engine.errors import Conflict, Forbidden, NotFound, msg
from engine.models import SlaClock, SlaEvent, WorkItem
from engine.sla import record_manual_event

from .calls import _load, deliver_process_event
from .context import ServiceContext
from .models import Call

URGE_KINDS = ("urge", "supervise")
SUPERVISE_ROLES = {"supervisor"}
OVERSIGHT_ROLES = {"supervisor", "district_dispatcher", "admin"}


class UrgeSchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(URGE_KINDS))
    note = fields.String(load_default="", validate=validate.Length(max=1000))


@dataclass
class OverdueEntry:
    clock: SlaClock
    item: WorkItem
    call: Call
    urges: int
    supervised: bool


def overdue_items(session: Session, *, now: datetime, street: str | None = None, unit: str | None = None,
                  stage: str | None = None, limit: int = 50, offset: int = 0) -> tuple[int, list[OverdueEntry]]:
    """Open work items past their deadline, longest overdue first, with how often they were urged."""
    cond = [SlaClock.state == "running", SlaClock.due_at <= now, WorkItem.state == "open"]
    if street:
        cond.append(Call.street_code == street)
    if unit:
        cond.append(SlaClock.unit == unit)
    if stage:
        cond.append(SlaClock.stage == stage)
    base = (select(SlaClock, WorkItem, Call)
            .join(WorkItem, WorkItem.id == SlaClock.work_item_id)
            .join(Call, Call.instance_id == SlaClock.instance_id)
            .where(*cond))
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = session.execute(base.order_by(SlaClock.due_at, SlaClock.id).limit(limit).offset(offset)).all()
    counts = {}
    if rows:
        ids = [c.id for c, _wi, _call in rows]
        for clock_id, kind, n in session.execute(
                select(SlaEvent.clock_id, SlaEvent.kind, func.count()).where(
                    SlaEvent.clock_id.in_(ids), SlaEvent.kind.in_(URGE_KINDS)).group_by(SlaEvent.clock_id,
                                                                                          SlaEvent.kind)):
            counts[(clock_id, kind)] = n
    return total, [OverdueEntry(c, wi, call, counts.get((c.id, "urge"), 0),
                                counts.get((c.id, "supervise"), 0) > 0) for c, wi, call in rows]


@dataclass
class UrgeOutcome:
    event: SlaEvent
    call: Call
    escalated: bool


def urge(ctx: ServiceContext, item_id: int, data: dict) -> UrgeOutcome:
    """A supervisor urges (催办) or formally supervises (督办) the unit holding an open, timed work item."""
    if ctx.user is None or ctx.user.role not in SUPERVISE_ROLES:
        raise Forbidden(msg("%(username)s may not urge: only supervisors do", username=ctx.actor))
    values = _load(UrgeSchema(), data)
    item = ctx.session.get(WorkItem, item_id)
    if item is None:
        raise NotFound(msg("no work item %(id)s", id=item_id))
    if item.state != "open":
        raise Conflict(msg("work item %(id)s (%(title)s) is already %(state)s", id=item_id, title=item.title,
                           state=item.state))
    clock = ctx.session.scalar(select(SlaClock).where(SlaClock.work_item_id == item.id,
                                                      SlaClock.state.in_(("running", "paused"))))
    if clock is None:
        raise Conflict(msg("work item %(id)s (%(title)s) has no running deadline to urge on", id=item_id,
                           title=item.title))
    call = ctx.session.scalar(select(Call).where(Call.instance_id == item.instance_id))
    now = ctx.clock.now()
    signal = record_manual_event(ctx.session, clock, values["kind"], now=now, actor=ctx.actor, note=values["note"])
    record_audit(ctx.session, at=now, actor=ctx.actor, action=f"supervision.{values['kind']}", subject=call.number,
                 instance_id=item.instance_id, work_item_id=item.id,
                 detail={"unit": item.owner_unit, "stage": clock.stage, "note": values["note"],
                         "due_at": clock.due_at.isoformat()})
    ctx.session.flush()
    escalated = False
    if signal is not None:
        escalated = deliver_process_event(ctx, item.id, signal, {"clock": clock.id, "stage": clock.stage,
                                                                  "unit": clock.unit, "by": ctx.actor}) > 0
    write_deferred(ctx.session)
    event = ctx.session.scalars(select(SlaEvent).where(SlaEvent.clock_id == clock.id)
                                .order_by(SlaEvent.id.desc()).limit(1)).first()
    return UrgeOutcome(event, call, escalated)
