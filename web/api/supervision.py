"""督查: the overdue list, 催办 and 督办."""
from __future__ import annotations

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from workflows.supervision import OVERSIGHT_ROLES, SUPERVISE_ROLES, UrgeSchema, overdue_items, urge

from .export import FORMATS, table_response
from .present import call_out, clock_out, item_out
from .schemas import MAX_ID, CallSchema, ClockSchema, WorkItemSchema
from .security import ctx, require

blp = Blueprint("supervision", __name__, url_prefix="/api/v1/supervision",
                description="Supervision: overdue items, urging (催办) and supervision orders (督办)")


class OverdueQuery(Schema):
    street = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    unit = fields.String(load_default=None, validate=validate.Length(min=1, max=64),
                         metadata={"description": "the responsible unit (department, street or community)"})
    stage = fields.String(load_default=None, validate=validate.Length(min=1, max=50))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100000))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    format = fields.String(load_default="json", validate=validate.OneOf(FORMATS),
                           metadata={"description": "json, or csv / xlsx to download (all matching rows, max 10000)"})


class OverdueEntrySchema(Schema):
    call = fields.Nested(CallSchema)
    item = fields.Nested(WorkItemSchema)
    clock = fields.Nested(ClockSchema)
    urges = fields.Integer(metadata={"description": "催办 so far"})
    supervised = fields.Boolean(metadata={"description": "a 督办 order was issued"})


class OverduePageSchema(Schema):
    items = fields.List(fields.Nested(OverdueEntrySchema))
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()


class UrgeRequest(UrgeSchema):
    work_item = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=MAX_ID))


class UrgeResultSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    call = fields.Nested(CallSchema)
    unit = fields.String()
    stage = fields.String()
    note = fields.String()
    actor = fields.String()
    occurred_at = fields.DateTime()
    escalated = fields.Boolean(metadata={"description": "a 督办 past the deadline escalated the call at once"})


OVERDUE_COLUMNS = [("call", "呼叫编号 call"), ("category", "类别 category"), ("street", "街镇 street"),
                   ("community", "社区 community"), ("unit", "责任单位 unit"), ("stage", "环节 stage"),
                   ("due_at", "时限 due"), ("overdue", "超时 overdue by"), ("urges", "催办 urges"),
                   ("supervised", "督办 supervised")]


@blp.route("/overdue", methods=["GET"])
@blp.arguments(OverdueQuery, location="query")
@blp.response(200, OverduePageSchema)
@require(*sorted(OVERSIGHT_ROLES))
def overdue(args):
    """Open work past its deadline, longest overdue first"""
    c = ctx()
    now = c.clock.now()
    calendar = c.sla.calendars.get(g.db)
    if args["format"] != "json":
        _total, rows = overdue_items(g.db, now=now, street=args["street"], unit=args["unit"], stage=args["stage"],
                                     limit=10000)
        table = [{"call": e.call.number, "category": e.call.category_code, "street": e.call.street_code,
                  "community": e.call.community_code, "unit": e.clock.unit, "stage": e.clock.stage,
                  "due_at": e.clock.due_at, "overdue": clock_out(e.clock, calendar, now)["remaining"],
                  "urges": e.urges, "supervised": "yes" if e.supervised else ""} for e in rows]
        return table_response(table, OVERDUE_COLUMNS, args["format"], f"overdue-{now:%Y%m%d-%H%M}")
    total, rows = overdue_items(g.db, now=now, street=args["street"], unit=args["unit"], stage=args["stage"],
                                limit=args["per_page"], offset=(args["page"] - 1) * args["per_page"])
    return {"items": [{"call": call_out(e.call, True), "item": item_out(e.item, c.user),
                       "clock": clock_out(e.clock, calendar, now), "urges": e.urges, "supervised": e.supervised}
                      for e in rows], "total": total, "page": args["page"], "per_page": args["per_page"]}


@blp.route("/urges", methods=["POST"])
@blp.arguments(UrgeRequest)
@blp.response(201, UrgeResultSchema)
@require(*sorted(SUPERVISE_ROLES))
def create_urge(body):
    """Urge (催办, kind=urge) or formally supervise (督办, kind=supervise) the unit holding a work item"""
    c = ctx()
    item_id = body.pop("work_item")
    out = urge(c, item_id, body)
    g.db.commit()
    e = out.event
    return {"id": e.id, "kind": e.kind, "call": call_out(out.call), "unit": e.unit, "stage": e.stage, "note": e.note,
            "actor": e.actor, "occurred_at": e.occurred_at, "escalated": out.escalated}
