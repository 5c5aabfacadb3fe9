"""What each human task of the dispatch process lets people do, and what doing it means.

The diagram's ``actions`` property says which actions a task offers; this
table says how each one is validated (a marshmallow schema) and what it does:
complete the task with some data, deliver an event to the task's boundary
events (a dispute, an extension request), or only record a fact (first
contact with the caller).  Handlers never touch SpiffWorkflow.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from marshmallow import Schema, fields, validate, validates_schema
from marshmallow import ValidationError as SchemaError
from sqlalchemy import select

from engine.errors import Conflict, ValidationFailed, msg
from engine.models import WorkItem

from .context import ServiceContext
from .models import Call, OrgUnit

SATISFACTION = ("satisfied", "basically_satisfied", "unsatisfied")
TEXT = validate.Length(min=1, max=4000)


class NoteSchema(Schema):
    note = fields.String(load_default="", validate=validate.Length(max=1000))


class ReasonSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=1000))


class ResultSchema(Schema):
    result = fields.String(required=True, validate=TEXT)
    evidence = fields.List(fields.String(validate=validate.Length(max=500)), load_default=list,
                           validate=validate.Length(max=20))


class MergeSchema(Schema):
    into = fields.String(required=True, validate=validate.Length(min=1, max=32))
    note = fields.String(load_default="", validate=validate.Length(max=1000))


class DispatchSchema(Schema):
    lead = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    assists = fields.List(fields.String(validate=validate.Length(min=1, max=64)), load_default=None,
                          validate=validate.Length(max=10))
    note = fields.String(load_default="", validate=validate.Length(max=1000))


class CoordinateSchema(Schema):
    lead = fields.String(required=True, validate=validate.Length(min=1, max=64))
    assists = fields.List(fields.String(validate=validate.Length(min=1, max=64)), load_default=list,
                          validate=validate.Length(max=10))
    note = fields.String(load_default="", validate=validate.Length(max=1000))


class ExtensionSchema(Schema):
    days = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=10))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=1000))


class ConfirmSchema(Schema):
    assists = fields.List(fields.String(validate=validate.Length(min=1, max=64)), load_default=list,
                          validate=validate.Length(max=5))
    note = fields.String(load_default="", validate=validate.Length(max=1000))


class ReassignSchema(Schema):
    department = fields.String(required=True, validate=validate.Length(min=1, max=64))
    note = fields.String(load_default="", validate=validate.Length(max=1000))


class RateSchema(Schema):
    satisfaction = fields.String(required=True, validate=validate.OneOf(SATISFACTION))
    resolved = fields.Boolean(required=True)
    comment = fields.String(load_default="", validate=validate.Length(max=1000))

    @validates_schema
    def _consistent(self, data, **_kwargs):
        if data.get("satisfaction") == "satisfied" and data.get("resolved") is False:
            raise SchemaError(msg("a caller cannot be satisfied with an unresolved call"), "resolved")


@dataclass
class Outcome:
    """complete: finish the task with ``data``; deliver: send ``event`` to its boundary; note: record only."""

    kind: str
    data: dict = field(default_factory=dict)
    event: str | None = None


@dataclass
class Action:
    schema: type[Schema]
    handler: Callable[[ServiceContext, Call, WorkItem, dict], Outcome]


def _complete(**fixed) -> Callable:
    def handler(_ctx, _call, _item, _data):
        return Outcome("complete", dict(fixed))
    return handler


def _with_result(**fixed) -> Callable:
    def handler(_ctx, call, item, data):
        role = (item.context.get("slot") or {}).get("role")
        if role in (None, "lead") or not call.result:
            call.result = data["result"]
        return Outcome("complete", dict(fixed))
    return handler


def _merge(ctx, call, _item, data):
    target = ctx.session.scalar(select(Call).where(Call.number == data["into"]))
    if target is None or target.id == call.id:
        raise ValidationFailed(msg("cannot merge into '%(number)s': no such earlier call", number=data["into"]),
                               field_errors={"into": [msg("no such earlier call")]})
    if target.status in ("closed", "voided", "merged"):
        raise ValidationFailed(msg("%(number)s is already %(status)s", number=target.number, status=target.status),
                               field_errors={"into": [msg("%(number)s is %(status)s; merge into an open call",
                                                          number=target.number, status=target.status)]})
    if target.street_code != call.street_code or target.parent_id is not None:
        raise ValidationFailed(msg("%(number)s is not a call of this street", number=target.number),
                               field_errors={"into": [msg("merge only into a call of the same street")]})
    call.merged_into_id = target.id
    return Outcome("complete", {"decision": "merge"})


def _departments(ctx, lead: str, assists: list[str], lead_field: str = "lead") -> list[dict]:
    """The slots of a lead and its assisting departments; an unknown one is named under the field it came in."""
    codes = [lead, *assists]
    if len(set(codes)) != len(codes):
        raise ValidationFailed(msg("a department appears twice"),
                               field_errors={"assists": [msg("each department once")]})
    known = set(ctx.session.scalars(select(OrgUnit.code).where(  # one query for all of them
        OrgUnit.code.in_(codes), OrgUnit.kind == "department", OrgUnit.active.is_(True))))
    for i, code in enumerate(codes):
        if code not in known:
            key = lead_field if i == 0 else "assists"
            raise ValidationFailed(msg("unknown department '%(code)s'", code=code),
                                   field_errors={key: [msg("unknown department '%(code)s'", code=code)]})
    return [{"department": lead, "role": "lead"}] + [{"department": c, "role": "assist"} for c in assists]


def _dispatch(ctx, call, _item, data):
    lead = data["lead"] or call.suggested_lead
    assists = data["assists"] if data["assists"] is not None else (
        list(call.suggested_assists or []) if not data["lead"] else [])
    if not lead:
        raise ValidationFailed(msg("name a lead department (一个牵头单位)"),
                               field_errors={"lead": [msg("required: the routing table suggests none for this "
                                                          "category")]})
    return Outcome("complete", {"decision": "dispatch", "slots": _departments(ctx, lead, assists)})


def _coordinate(ctx, call, _item, data):
    slots = _departments(ctx, data["lead"], data["assists"])
    from .calls import open_child_tickets  # the parent/child bookkeeping lives with the calls

    open_child_tickets(ctx, call, slots)
    return Outcome("complete", {"slots": slots})


def _dispute(_ctx, _call, item, data):
    return Outcome("deliver", {"reason": data["reason"], "department": item.owner_unit}, event="dispute")


def _extension(ctx, _call, item, data):
    """A request waits for the command centre's ruling; one at a time per department (two pending requests
    could both be approved and their days add up)."""
    rulings = ctx.session.scalars(select(WorkItem).where(
        WorkItem.instance_id == item.instance_id, WorkItem.task_name == "rule_extension", WorkItem.state == "open"))
    if any((r.context.get("extension") or {}).get("department") == item.owner_unit for r in rulings):
        raise Conflict(msg("an extension request of %(department)s is already waiting for the command centre's "
                           "ruling", department=item.owner_unit))
    return Outcome("deliver", {"days": data["days"], "reason": data["reason"], "department": item.owner_unit},
                   event="extension_request")


def _contact(ctx, call, _item, _data):
    if call.first_contact_at is None:
        call.first_contact_at = ctx.clock.now()
    return Outcome("note")


def _reassign(ctx, _call, item, data):
    slot = item.context.get("slot") or {}
    current = slot.get("department")
    _departments(ctx, data["department"], [], lead_field="department")
    if data["department"] == current:
        raise ValidationFailed(msg("that is the department already handling it"),
                               field_errors={"department": [msg("choose a different department")]})
    still_working = ctx.session.scalar(select(WorkItem.id).where(
        WorkItem.instance_id == item.instance_id, WorkItem.state == "open", WorkItem.lane == "department",
        WorkItem.owner_unit == current).limit(1))
    if still_working is None:
        raise Conflict(msg("%(department)s has already reported this work done; it can no longer be reassigned",
                           department=current))
    return Outcome("complete", {"ruling": "reassign", "new_department": data["department"]})


def _confirm(ctx, _call, item, data):
    """The centre keeps the disputing department on it, optionally adding assisting units."""
    current = (item.context.get("slot") or {}).get("department")
    if current in data["assists"]:
        raise ValidationFailed(msg("the department in dispute cannot also assist itself"),
                               field_errors={"assists": [msg("%(department)s already handles it", department=current)]})
    added = [s["department"] for s in _departments(ctx, data["assists"][0], data["assists"][1:],
                                                   lead_field="assists")] if data["assists"] else []
    return Outcome("complete", {"ruling": "confirm", "added_assists": added})


def _approve_extension(ctx, _call, item, _data):
    """An approved extension moves the department's resolve deadline by the days it asked for."""
    ext = item.context.get("extension") or {}
    if ext.get("days") and ext.get("department"):
        ctx.sla.extend(ctx.session, instance_id=item.instance_id, stage="resolve", unit=ext["department"],
                       working_days=int(ext["days"]), now=ctx.clock.now())
    return Outcome("complete", {"extension_approved": True})


def _rate(_ctx, call, _item, data):
    call.satisfaction = data["satisfaction"]
    return Outcome("complete", {"satisfaction": data["satisfaction"], "resolved": data["resolved"]})


ACTIONS: dict[str, dict[str, Action]] = {
    "community_handle": {"handle": Action(ResultSchema, _with_result(outcome="handled")),
                         "call_street": Action(ReasonSchema, _complete(outcome="call_street"))},
    "street_triage": {"void": Action(ReasonSchema, _complete(decision="void")),
                      "merge": Action(MergeSchema, _merge),
                      "handle": Action(NoteSchema, _complete(decision="handle")),
                      "dispatch": Action(DispatchSchema, _dispatch),
                      "escalate": Action(ReasonSchema, _complete(decision="escalate"))},
    "street_handle": {"done": Action(ResultSchema, _with_result())},
    "district_coordinate": {"coordinate": Action(CoordinateSchema, _coordinate)},
    "sign": {"sign": Action(NoteSchema, _complete()), "dispute": Action(ReasonSchema, _dispute)},
    "resolve": {"done": Action(ResultSchema, _with_result(action="done")),
                "hang": Action(ReasonSchema, _complete(action="hang")),
                "dispute": Action(ReasonSchema, _dispute),
                "request_extension": Action(ExtensionSchema, _extension),
                "contact": Action(NoteSchema, _contact)},
    "on_hold": {"resume": Action(NoteSchema, _complete())},
    "assist_work": {"done": Action(ResultSchema, _complete())},
    "rule_dispute": {"confirm": Action(ConfirmSchema, _confirm),
                     "reassign": Action(ReassignSchema, _reassign)},
    "rule_extension": {"approve": Action(NoteSchema, _approve_extension),
                       "refuse": Action(ReasonSchema, _complete(extension_approved=False))},
    "verify": {"pass": Action(NoteSchema, _complete(passed=True)),
               "fail": Action(ReasonSchema, _complete(passed=False))},
    "feedback": {"rate": Action(RateSchema, _rate)},
}


_SCHEMAS: dict[type, Schema] = {}


def _schema(cls: type[Schema]) -> Schema:
    """One instance per schema class (building a marshmallow schema is not free; loading is thread-safe)."""
    schema = _SCHEMAS.get(cls)
    if schema is None:
        schema = _SCHEMAS[cls] = cls()
    return schema


def available_actions(item: WorkItem) -> list[str]:
    """Actions the diagram offers on this task that the application knows how to do."""
    offered = [a.strip() for a in (item.properties or {}).get("actions", "").split(",") if a.strip()]
    known = ACTIONS.get(item.task_name, {})
    return [a for a in offered if a in known]


def resolve_action(item: WorkItem, action: str, data: dict | None) -> tuple[Action, dict]:
    """Find and validate ``action`` on ``item``; raises :class:`ValidationFailed` with field errors."""
    names = available_actions(item)
    if action not in names:
        raise ValidationFailed(msg("'%(action)s' is not an action of '%(title)s' (available: %(actions)s)",
                                   action=action, title=item.title, actions=", ".join(names)),
                               field_errors={"action": [msg("one of: %(actions)s", actions=", ".join(names))]})
    spec = ACTIONS[item.task_name][action]
    if data is not None and not isinstance(data, dict):
        raise ValidationFailed(msg("action data must be a JSON object"))
    try:
        loaded = _schema(spec.schema).load(data or {})
    except SchemaError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        flat = {k: (v if isinstance(v, list) else [str(v)]) for k, v in messages.items()}
        raise ValidationFailed(msg("invalid data for '%(action)s'", action=action), field_errors=flat) from None
    return spec, loaded
