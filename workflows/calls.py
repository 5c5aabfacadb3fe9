"""Calls (tickets): filing, acting on their work items, reading them back.

Every function takes a :class:`ServiceContext`, changes state, writes the
audit log and flushes; it never commits.  One call = one engine instance.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from marshmallow import Schema, fields, validate
from marshmallow import ValidationError as SchemaError
from sqlalchemy import bindparam, event, select
from sqlalchemy.orm import Session, joinedload

from engine.audit import audit_trail, record_audit
from engine.clock import MemoClock
from engine.db import DriverSelect, attach, loaded_columns
from engine.errors import Conflict, Forbidden, NotFound, ValidationFailed, msg
from engine.ids import reserve
from engine.models import AuditEvent, ProcessDefinition, ProcessInstance, SlaClock, WorkItem
from engine.runtime import StepResult
from engine.sla import clock_fingerprint, note_clock_fingerprint, remaining_time

from .actions import available_actions, resolve_action
from .context import ServiceContext
from .events import SIGNAL_EVENTS, emit
from .models import URGENCIES, Call
from .org import FILING_ROLES, LANE_ROLES, check_may_act, district_of, get_category, get_unit, may_see_call
from .sla import sla_facts

PROCESS_ID = "call_dispatch"
# A call's status is that of its least advanced open work item.
STATUS_ORDER = ("reported", "triage", "district", "dispatched", "in_progress", "on_hold", "verify", "feedback")
LEVEL_OF_LANE = {"community": "community", "street": "street", "district": "district"}
LEVEL_RANK = {"community": 0, "street": 1, "district": 2}


class FileCallSchema(Schema):
    category = fields.String(required=True, validate=validate.Length(min=1, max=64))
    description = fields.String(required=True, validate=validate.Length(min=1, max=4000))
    location = fields.String(required=True, validate=validate.Length(min=1, max=200))
    urgency = fields.String(load_default="normal", validate=validate.OneOf(URGENCIES))
    community = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    direct_to_street = fields.Boolean(load_default=False)
    latitude = fields.Float(load_default=None, validate=validate.Range(min=-90, max=90))
    longitude = fields.Float(load_default=None, validate=validate.Range(min=-180, max=180))
    photos = fields.List(fields.String(validate=validate.Length(min=1, max=300)), load_default=list,
                         validate=validate.Length(max=9))


def _load(schema: Schema, data) -> dict:
    if not isinstance(data, dict):
        raise ValidationFailed(msg("expected a JSON object"))
    try:
        return schema.load(data)
    except SchemaError as exc:
        msgs = {k: (v if isinstance(v, list) else [str(v)]) for k, v in exc.messages.items()}
        raise ValidationFailed("; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in msgs.items()),
                               field_errors=msgs) from None


def file_call(ctx: ServiceContext, data: dict) -> Call:
    """A grid worker (or community staff, a street dispatcher, the hotline) files a call; starts its process.

    Raises :class:`ValidationFailed` (bad input) or :class:`Forbidden` (role).
    """
    return _file(ctx, data)[0]


def _file(ctx: ServiceContext, data: dict) -> tuple[Call, StepResult]:
    user = ctx.user
    if user.role not in FILING_ROLES:
        raise Forbidden(msg("%(role)s cannot file calls", role=user.role))
    values = _load(FileCallSchema(), data)
    category = get_category(ctx.session, values["category"])
    if user.unit.kind == "community":
        community = user.unit
        if values["community"] not in (None, community.code):
            raise Forbidden(msg("%(username)s files calls for %(community)s only", username=user.username,
                                community=community.code))
    else:  # a street command centre, or the district's hotline intake (12345, Open311)
        if not values["community"]:
            raise ValidationFailed(msg("community is required when a %(kind)s files a call", kind=user.unit.kind),
                                   field_errors={"community": [msg("required")]})
        community = get_unit(ctx.session, values["community"], "community")
        if user.unit.kind == "street" and community.parent_id != user.unit_id:
            raise Forbidden(msg("%(community)s is not a community of %(street)s", community=community.code,
                                street=user.unit.code))
        if user.unit.kind == "district" and district_of(community).id != user.unit_id:
            raise Forbidden(msg("%(community)s is not in %(district)s", community=community.code,
                                district=user.unit.code))
        values["direct_to_street"] = True
    street = community.parent
    district = district_of(community)
    now = ctx.clock.now()
    # the call's and its instance's ids first (the number is made of the id): every row of the filing,
    # the call's included, then goes out in the one batch at its end (engine.ids)
    call_id, instance_id = reserve(ctx.session, Call, ProcessInstance)
    number = f"HY{now:%Y%m%d}{call_id:06d}"
    step = ctx.runtime.start(PROCESS_ID, {
        "call": number, "category": category.code, "urgency": values["urgency"],
        "community": community.code, "street": street.code, "district": district.code,
        "direct_to_street": values["direct_to_street"], "level": "street", "problem_ticket": False,
        "reopen_count": 0, "rework_count": 0, "rework": False, "reassign_count": 0,
    }, business_key=number, actor=ctx.actor, instance_id=instance_id)
    call = Call(id=call_id, number=number, category_code=category.code, description=values["description"],
                location=values["location"], latitude=values["latitude"], longitude=values["longitude"],
                urgency=values["urgency"], photos=values["photos"], reporter=user, community_code=community.code,
                street_code=street.code, status="reported", level="community", instance_id=step.instance.id,
                created_at=now, updated_at=now, reopen_count=0, rework_count=0, problem_ticket=False)
    ctx.session.add(call)
    routed = next(iter(step.opened_data.values()), {})
    call.handling_level = routed.get("handling_level", "street")
    call.suggested_lead = routed.get("lead_department") or None
    call.suggested_assists = list(routed.get("assist_departments") or [])
    call.sla_class = routed.get("sla_class", "standard")
    _sync_call(ctx, call, step)
    record_audit(ctx.session, at=now, actor=ctx.actor, action="call.filed", subject=call.number,
                 instance_id=call.instance_id, new={"status": call.status, "level": call.level},
                 detail={"category": category.code, "urgency": call.urgency, "community": community.code,
                         "routing": {"handling_level": call.handling_level, "lead": call.suggested_lead,
                                     "assists": call.suggested_assists, "sla_class": call.sla_class}})
    ctx.runtime.flush()  # (before the outbox's rows, which point at the call)
    emit(ctx.session, "call.filed", call, at=now, actor=ctx.actor,
         data={"description": call.description, "location": call.location, "photos": call.photos})
    return call, step


@dataclass
class Filing:
    call: Call
    replayed: bool  # True: an earlier request with the same Idempotency-Key filed it
    open_items: list[WorkItem] = field(default_factory=list)  # the call's open work items now


def file_call_once(ctx: ServiceContext, data: dict, *, key: str | None, request_hash: str) -> Filing:
    """:func:`file_call`, at most once per (user, ``key``).

    A retry with the same key and the same request gets the first call back;
    the same key with a different request is a :class:`Conflict`.  Two racing
    requests with one key: the unique index lets one insert win; the loser's
    flush raises ``IntegrityError`` and its caller should roll back and call
    :func:`replay_filing`.
    """
    from .models import IdempotencyKey

    if key is None:
        call, step = _file(ctx, data)
        return Filing(call, False, step.open_items)
    replay = replay_filing(ctx, key, request_hash)
    if replay is not None:
        return replay
    call, step = _file(ctx, data)
    # the key's row last, so the filing's writes stay one short transaction at its end; a racing twin
    # blocks here until the first commits (PostgreSQL; SQLite's writers go one at a time anyway), then
    # fails on the unique index: its caller rolls back (its whole filing) and replays the first
    ctx.session.add(IdempotencyKey(user_id=ctx.user.id, key=key, request_hash=request_hash,
                                   created_at=ctx.clock.now(), call_id=call.id))
    ctx.session.flush()
    return Filing(call, False, step.open_items)


def replay_filing(ctx: ServiceContext, key: str, request_hash: str) -> Filing | None:
    from .models import IdempotencyKey

    row = ctx.session.scalar(select(IdempotencyKey).where(IdempotencyKey.user_id == ctx.user.id,
                                                          IdempotencyKey.key == key))
    if row is None:
        return None
    if row.request_hash != request_hash:
        raise Conflict(msg("this Idempotency-Key was already used for a different request; use a new key"))
    call = ctx.session.get(Call, row.call_id)
    items = list(ctx.session.scalars(select(WorkItem).where(WorkItem.instance_id == call.instance_id,
                                                            WorkItem.state == "open").order_by(WorkItem.id)))
    return Filing(call, True, items)


@dataclass
class ActionOutcome:
    call: Call
    item: WorkItem
    action: str
    opened: list[WorkItem] = field(default_factory=list)
    closed: list[WorkItem] = field(default_factory=list)
    caught: int = 1


_CALL_OF_INSTANCE = select(Call).where(Call.instance_id == bindparam("instance"))


def call_of_instance(session: Session, instance_id: int) -> Call:
    """The call a process instance runs for (one per instance, a unique index; child tickets have none)."""
    call = session.scalar(_CALL_OF_INSTANCE, {"instance": instance_id})
    if call is None:
        raise NotFound(msg("no call for process instance %(id)s", id=instance_id))
    return call


# Every action and every fired SLA event runs this: the work item, the other open items of its instance,
# the instance (with its definition) and the call, in one statement sent to the driver; the rows become
# the session's objects without the ORM's per-row loading (a tenth of an action): see engine.db.attach.
_ITEM_KEYS, _CALL_KEYS = loaded_columns(WorkItem), loaded_columns(Call)
_INSTANCE_KEYS, _DEFINITION_KEYS = loaded_columns(ProcessInstance), loaded_columns(ProcessDefinition)
_FOR_ACTION = DriverSelect(
    select(*(getattr(WorkItem, k) for k in _ITEM_KEYS), *(getattr(Call, k) for k in _CALL_KEYS),
           *(getattr(ProcessInstance, k) for k in _INSTANCE_KEYS),
           *(getattr(ProcessDefinition, k) for k in _DEFINITION_KEYS), *clock_fingerprint(WorkItem.instance_id))
    .select_from(WorkItem)
    .join(Call, Call.instance_id == WorkItem.instance_id)
    .join(ProcessInstance, ProcessInstance.id == WorkItem.instance_id)
    .join(ProcessDefinition, ProcessDefinition.id == ProcessInstance.definition_id)
    .where(WorkItem.instance_id == select(WorkItem.instance_id).where(WorkItem.id == bindparam("item"))
           .scalar_subquery(), (WorkItem.state == "open") | (WorkItem.id == bindparam("item")))
    .order_by(WorkItem.id))
_ITEM_ID = _ITEM_KEYS.index("id")
_CALL_AT = len(_ITEM_KEYS)
_INSTANCE_AT = _CALL_AT + len(_CALL_KEYS)
_DEFINITION_AT = _INSTANCE_AT + len(_INSTANCE_KEYS)
_FINGERPRINT_AT = _DEFINITION_AT + len(_DEFINITION_KEYS)


# the same for several work items at once (the scheduler's batch); see preload_for_actions
_FOR_ACTIONS = (
    select(WorkItem, Call).join(Call, Call.instance_id == WorkItem.instance_id)
    .options(joinedload(WorkItem.instance))
    .where(WorkItem.instance_id.in_(select(WorkItem.instance_id)
                                    .where(WorkItem.id.in_(bindparam("items", expanding=True)))),
           (WorkItem.state == "open") | WorkItem.id.in_(bindparam("items", expanding=True)))
    .order_by(WorkItem.id))
_PRELOADED = "huying.preloaded_for_action"  # session.info: item id -> (instance id, item, call, open items)


def preload_for_actions(session: Session, item_ids: list[int | None]) -> None:
    """Read what :func:`load_for_action` needs for several work items in one query.

    The scheduler fires a batch of clocks in one transaction: one round trip
    for the batch instead of one per event.  Each entry is used once; a step
    on an instance makes the entries of that instance's other items stale, so
    they are dropped and those items are read again when their turn comes.
    """
    ids = sorted({i for i in item_ids if i is not None})
    if len(ids) < 2:
        return
    rows = session.execute(_FOR_ACTIONS, {"items": ids}).unique().all()
    by_instance: dict[int, tuple[Call, list[WorkItem]]] = {}
    for wi, call in rows:
        by_instance.setdefault(wi.instance_id, (call, []))[1].append(wi)
    wanted = set(ids)
    session.info[_PRELOADED] = {
        wi.id: (wi.instance_id, wi, by_instance[wi.instance_id][0],
                [x for x in by_instance[wi.instance_id][1] if x.state == "open"])
        for wi, _call in rows if wi.id in wanted}


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _forget_preloaded(session):
    session.info.pop(_PRELOADED, None)


def load_for_action(session: Session, item_id: int) -> tuple[WorkItem, Call, list[WorkItem]]:
    """The work item, its call and the instance's open work items, in one query.

    An action needs all three: the item to check and complete, the call to
    update, and the other open items to see which ones the step closes.
    """
    preloaded = session.info.get(_PRELOADED)
    if preloaded:
        entry = preloaded.pop(item_id, None)
        if entry is not None:
            instance_id, item, call, open_items = entry
            for other in [k for k, v in preloaded.items() if v[0] == instance_id]:
                del preloaded[other]  # this step will change that instance's items
            return item, call, open_items
    rows = _FOR_ACTION.all(session, item=item_id)
    if not any(row[_ITEM_ID] == item_id for row in rows):
        if session.get(WorkItem, item_id) is None:
            raise NotFound(msg("no work item %(id)s", id=item_id))
        raise NotFound(msg("no call for the process of work item %(id)s", id=item_id))
    first = rows[0]
    definition = attach(session, ProcessDefinition,
                        dict(zip(_DEFINITION_KEYS, first[_DEFINITION_AT:_FINGERPRINT_AT], strict=True)))
    instance = attach(session, ProcessInstance,
                      dict(zip(_INSTANCE_KEYS, first[_INSTANCE_AT:_DEFINITION_AT], strict=True)),
                      definition=definition)
    call = attach(session, Call, dict(zip(_CALL_KEYS, first[_CALL_AT:_INSTANCE_AT], strict=True)))
    items = [attach(session, WorkItem, dict(zip(_ITEM_KEYS, row[:_CALL_AT], strict=True)), instance=instance)
             for row in rows]
    item = next(wi for wi in items if wi.id == item_id)
    # (the SLA keeper then takes the instance's clocks from its cache if they are unchanged)
    note_clock_fingerprint(session, item.instance_id, tuple(first[_FINGERPRINT_AT:]))
    return item, call, [wi for wi in items if wi.state == "open"]


def get_work_item(session: Session, item_id: int) -> WorkItem:
    item = session.get(WorkItem, item_id, options=[joinedload(WorkItem.instance)])
    if item is None:
        raise NotFound(msg("no work item %(id)s", id=item_id))
    return item


def act_on_work_item(ctx: ServiceContext, item_id: int, action: str, data: dict | None = None) -> ActionOutcome:
    """Do ``action`` on a work item: checks role and org unit, validates, advances the process.

    Raises :class:`NotFound`, :class:`Forbidden`, :class:`ValidationFailed` or
    :class:`Conflict` (already done, or someone else acted first); nothing is
    written when it raises.
    """
    item, call, open_items = load_for_action(ctx.session, item_id)
    check_may_act(ctx.user, item)
    if item.state != "open":
        raise Conflict(msg("work item %(id)s (%(title)s) is already %(state)s by %(by)s", id=item.id,
                           title=item.title, state=item.state, by=item.closed_by) if item.closed_by else
                       msg("work item %(id)s (%(title)s) is already %(state)s", id=item.id, title=item.title,
                           state=item.state))
    spec, values = resolve_action(item, action, data)
    old = {"status": call.status, "level": call.level}
    if item.assignee is None:  # the first person to act on an item takes it
        item.assignee, item.claimed_at = ctx.actor, ctx.clock.now()
    outcome = spec.handler(ctx, call, item, values)
    runtime = ctx.runtime
    if outcome.kind == "complete":
        step = runtime.complete(item, outcome.data, actor=ctx.actor, action=action, open_items=open_items)
    elif outcome.kind == "deliver":
        step = runtime.deliver(item, outcome.event, outcome.data, actor=ctx.actor, open_items=open_items)
        if step.caught == 0:
            raise Conflict(msg("'%(action)s' cannot be done on '%(title)s' now", action=action, title=item.title))
        item.context = {**item.context, outcome.event: outcome.data}
    else:
        step = None
    now = ctx.clock.now()
    if step is not None:
        _sync_call(ctx, call, step)
    call.updated_at = now
    record_audit(ctx.session, at=now, actor=ctx.actor, action=f"{item.task_name}.{action}", subject=call.number,
                 instance_id=item.instance_id, work_item_id=item.id, old=old,
                 new={"status": call.status, "level": call.level},
                 detail={"task": item.title, "unit": item.owner_unit, **values})
    if item.task_name == "sign" and action == "sign":
        emit(ctx.session, "call.signed", call, at=now, actor=ctx.actor, data={"department": item.owner_unit})
    if step is not None:
        _emit_step(ctx, call, step, old, now)
    runtime.flush()
    return ActionOutcome(call, item, action, step.opened if step else [], step.closed if step else [],
                         step.caught if step else 1)


def act_with_evidence(ctx: ServiceContext, item_id: int, action: str, data: dict, evidence: list,
                      url_of: Callable[[object], str]) -> ActionOutcome:
    """:func:`act_on_work_item` with evidence files: their links go into the action's ``evidence``
    and, once the action succeeded, the files belong to the call."""
    if evidence:
        data = {**data, "evidence": [url_of(a) for a in evidence]}
    out = act_on_work_item(ctx, item_id, action, data)
    for attachment in evidence:
        attachment.call_id = out.call.id
    return out


def deliver_process_event(ctx: ServiceContext, item_id: int, event: str, payload: dict | None = None) -> int:
    """Deliver an engine event (an SLA warning, breach or overdue) to one work item's task.

    Returns how many boundary events caught it; 0 means it was already handled.
    """
    item, call, open_items = load_for_action(ctx.session, item_id)
    if item.state != "open":
        return 0
    old = {"status": call.status, "level": call.level}
    step = ctx.runtime.deliver(item, event, payload or {"work_item": item.id}, actor=ctx.actor,
                               open_items=open_items)
    if step.caught:
        now = ctx.clock.now()
        _sync_call(ctx, call, step)
        call.updated_at = now
        record_audit(ctx.session, at=now, actor=ctx.actor, action=f"event.{event}",
                     subject=call.number, instance_id=item.instance_id, work_item_id=item.id, old=old,
                     new={"status": call.status, "level": call.level},
                     detail={"task": item.title, "unit": item.owner_unit})
        if event in SIGNAL_EVENTS:
            emit(ctx.session, SIGNAL_EVENTS[event], call, at=now, actor=ctx.actor,
                 data={"task": item.task_name, "unit": item.owner_unit, "work_item": item.id})
        _emit_step(ctx, call, step, old, now)
        ctx.runtime.flush()
    return step.caught


def _emit_step(ctx: ServiceContext, call: Call, step: StepResult, old: dict, now: datetime) -> None:
    """Outbox events a process step implies: departments newly asked to sign; the call closed."""
    signing = [wi.owner_unit for wi in step.opened if wi.task_name == "sign"]
    if signing:
        emit(ctx.session, "call.dispatched", call, at=now, actor=ctx.actor, data={"departments": signing})
    if call.closed_at is not None and old.get("status") != call.status and call.status == "closed":
        emit(ctx.session, "call.closed", call, at=now, actor=ctx.actor,
             data={"result": call.result, "satisfaction": call.satisfaction})


def open_child_tickets(ctx: ServiceContext, parent: Call, slots: list[dict]) -> list[Call]:
    """District coordination: one child ticket per department; the parent closes when all have."""
    existing = ctx.session.scalars(select(Call).where(Call.parent_id == parent.id)).all()
    now = ctx.clock.now()
    children = []
    for i, slot in enumerate(slots, start=len(existing) + 1):
        child = Call(number=f"{parent.number}-{i}", category_code=parent.category_code,
                     description=parent.description, location=parent.location, urgency=parent.urgency,
                     photos=[], reporter_id=parent.reporter_id, community_code=parent.community_code,
                     street_code=parent.street_code, status="dispatched", level="district",
                     parent_id=parent.id, department_code=slot["department"], created_at=now, updated_at=now)
        ctx.session.add(child)
        children.append(child)
    ctx.session.flush()
    for child in children:
        record_audit(ctx.session, at=now, actor=ctx.actor, action="call.child_opened", subject=parent.number,
                     new={"child": child.number, "department": child.department_code})
    return children


def _sync_call(ctx: ServiceContext, call: Call, step: StepResult) -> None:
    """Mirror the process onto the call: status, level, counters, child tickets, SLA clocks."""
    now = ctx.clock.now()
    ctx.sla.sync(ctx.session, instance_id=step.instance.id, subject=call.number, opened=step.opened,
                 closed=step.closed, facts=sla_facts(call), now=now, actor=ctx.actor, new_instance=step.started)
    items = step.open_items
    if step.ended:
        call.status = step.end_status or "closed"
        call.closed_at = now
    else:
        statuses = [wi.properties.get("status") for wi in items if wi.properties.get("status") in STATUS_ORDER]
        if statuses:
            call.status = min(statuses, key=STATUS_ORDER.index)
    levels = [LEVEL_OF_LANE[wi.lane] for wi in items if wi.lane in LEVEL_OF_LANE]
    if levels:
        call.level = max(levels, key=LEVEL_RANK.__getitem__)
    for data in step.opened_data.values():
        call.reopen_count = max(call.reopen_count, int(data.get("reopen_count", 0)))
        call.rework_count = max(call.rework_count, int(data.get("rework_count", 0)))
        if data.get("problem_ticket"):
            call.problem_ticket = True
    # only district coordination opens child tickets; skip the query for every other call
    children = [] if call.level != "district" and not step.ended else ctx.session.scalars(
        select(Call).where(Call.parent_id == call.id, Call.closed_at.is_(None))).all()
    for child in children:
        mine = [wi.properties.get("status") for wi in items
                if wi.lane == "department" and wi.owner_unit == child.department_code
                and wi.properties.get("status") in STATUS_ORDER]
        if mine:
            child.status = min(mine, key=STATUS_ORDER.index)
        elif call.level == "district" or step.ended:
            child.status = "closed"
            child.closed_at = now
        child.updated_at = now


# ---- reading -----------------------------------------------------------------------------------

def get_call(ctx: ServiceContext, number: str) -> Call:
    call = ctx.session.scalar(select(Call).where(Call.number == number))
    if call is None:
        raise NotFound(msg("no call %(number)s", number=number))
    if not may_see_call(ctx.session, ctx.user, call):
        raise Forbidden(msg("%(username)s may not see %(number)s", username=ctx.user.username, number=number))
    return call


@dataclass
class CallView:
    call: Call
    open_items: list[WorkItem]
    timeline: list[AuditEvent]
    children: list[Call]
    deadlines: dict[int, ItemDeadline] = field(default_factory=dict)
    clocks: list[SlaClock] = field(default_factory=list)


def show_call(ctx: ServiceContext, number: str) -> CallView:
    call = get_call(ctx, number)
    root = call.parent if call.parent_id else call
    items = list(ctx.session.scalars(select(WorkItem).where(WorkItem.instance_id == root.instance_id,
                                                            WorkItem.state == "open").order_by(WorkItem.id)))
    if call.parent_id:
        items = [wi for wi in items if wi.owner_unit == call.department_code]
    children = list(ctx.session.scalars(select(Call).where(Call.parent_id == call.id).order_by(Call.id)))
    clocks = list(ctx.session.scalars(select(SlaClock).where(SlaClock.instance_id == root.instance_id)
                                      .order_by(SlaClock.id)))
    return CallView(call, items, audit_trail(ctx.session, root.number), children, item_deadlines(ctx, items),
                    clocks)


@dataclass
class CallDiagram:
    file_name: str
    xml: str
    process_id: str
    version: int
    completed: dict[str, int]
    active: list[str]


def call_diagram(ctx: ServiceContext, number: str) -> CallDiagram:
    """The BPMN diagram of the version the call runs on, with its path so far and its current position."""
    call = get_call(ctx, number)
    root = call.parent if call.parent_id else call
    if root.instance_id is None:
        raise NotFound(msg("%(number)s has no process", number=number))
    from engine.models import ProcessInstance

    instance = ctx.session.get(ProcessInstance, root.instance_id)
    definition = instance.definition
    trace = ctx.runtime.trace(instance)
    marker = f'id="{definition.process_id}"'
    name, xml = next(((n, x) for n, x in sorted(definition.files.items()) if n.endswith(".bpmn") and marker in x),
                     next(iter(sorted(definition.files.items()))))
    return CallDiagram(name, xml, definition.process_id, definition.version, trace.completed, sorted(trace.active))


@dataclass
class ItemDeadline:
    """A work item's SLA deadline as its owner sees it."""

    due_at: datetime
    remaining: timedelta  # working (or, for urgent work, wall) time left; negative when overdue
    state: str  # normal, warning, overdue, paused
    stage: str
    working_time: bool
    assumed_calendar: bool


def clock_deadline(clock_row: SlaClock, calendar, now: datetime) -> ItemDeadline:
    if clock_row.state == "paused":
        state = "paused"
    elif now >= clock_row.due_at:
        state = "overdue"
    elif now >= clock_row.warn_at:
        state = "warning"
    else:
        state = "normal"
    return ItemDeadline(clock_row.due_at, remaining_time(clock_row, calendar, now), state, clock_row.stage,
                        clock_row.target_kind != "wall_hours", clock_row.assumed_calendar)


def item_deadlines(ctx: ServiceContext, items: list[WorkItem]) -> dict[int, ItemDeadline]:
    """Deadline and remaining time of each timed work item (one query for all of them)."""
    ids = [wi.id for wi in items]
    if not ids:
        return {}
    clocks = ctx.session.scalars(select(SlaClock).where(SlaClock.work_item_id.in_(ids),
                                                         SlaClock.state.in_(("running", "paused")))).all()
    if not clocks:
        return {}
    calendar = ctx.sla.calendars.get(ctx.session)
    now = ctx.clock.now()
    return {c.work_item_id: clock_deadline(c, calendar, now) for c in clocks}


@dataclass
class QueueEntry:
    item: WorkItem
    call: Call
    actions: list[str]
    deadline: ItemDeadline | None = None


def _queue_filter(ctx: ServiceContext):
    lanes = [lane for lane, roles in LANE_ROLES.items() if ctx.user.role in roles]
    if not lanes:
        return None
    return (WorkItem.owner_unit == ctx.user.unit.code, WorkItem.state == "open", WorkItem.lane.in_(lanes))


def count_my_work(ctx: ServiceContext, cap: int = 1000) -> tuple[int, bool]:
    """(count, exact): how many items are in the queue, counting at most ``cap`` (a busy unit's
    exact total would cost a scan of all its open work on every page)."""
    where = _queue_filter(ctx)
    if where is None:
        return 0, True
    from sqlalchemy import func

    n = ctx.session.scalar(select(func.count()).select_from(
        select(WorkItem.id).where(*where).limit(cap + 1).subquery())) or 0
    return min(n, cap), n <= cap


def my_work(ctx: ServiceContext, limit: int = 200, offset: int = 0) -> list[QueueEntry]:
    """The open work items this user's role and org unit may act on, most urgent deadline first."""
    where = _queue_filter(ctx)
    if where is None:
        return []
    rows = ctx.session.execute(
        select(WorkItem, Call).join(Call, Call.instance_id == WorkItem.instance_id)
        .where(*where)
        .order_by(WorkItem.due_at.asc().nulls_last(), WorkItem.created_at, WorkItem.id)
        .limit(limit).offset(offset)).all()
    deadlines = item_deadlines(ctx, [item for item, _call in rows])
    return [QueueEntry(item, call, available_actions(item), deadlines.get(item.id)) for item, call in rows]


def make_sla_deliver(clock, keeper):
    """The scheduler's way into the process: deliver a clock's warning/breach/overdue to its task."""
    from .context import ServiceContext

    def deliver(session: Session, sla_clock, signal: str, now: datetime | None = None) -> int:
        if sla_clock.work_item_id is None:
            return 0
        # every timestamp of the delivery is the sweep's moment (and a stored virtual clock is not re-read)
        ctx = ServiceContext(session, MemoClock(clock, now), None, sla=keeper, system_actor="scheduler")
        payload = {"clock": sla_clock.id, "stage": sla_clock.stage, "unit": sla_clock.unit,
                   "due_at": sla_clock.due_at.isoformat()}
        return deliver_process_event(ctx, sla_clock.work_item_id, signal, payload)

    def prepare(session: Session, clocks) -> None:  # a batch of clocks about to fire: one read for all
        preload_for_actions(session, [c.work_item_id for c in clocks])

    deliver.prepare = prepare
    return deliver
