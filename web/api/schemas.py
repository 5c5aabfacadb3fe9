"""Response (and shared request) schemas of the REST API."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from workflows.models import ROLES, UNIT_KINDS, URGENCIES

STATUSES = ("reported", "triage", "district", "dispatched", "in_progress", "on_hold", "verify", "feedback",
            "closed", "voided", "merged")
LEVELS = ("community", "street", "district")
MAX_ID = 2 ** 31 - 1  # ids are INTEGER columns (int4 on PostgreSQL): a larger one names nothing


class UnitRefSchema(Schema):
    code = fields.String()
    name = fields.String()
    name_en = fields.String()
    kind = fields.String(validate=validate.OneOf(UNIT_KINDS))


class UserSchema(Schema):
    username = fields.String()
    display_name = fields.String()
    role = fields.String(validate=validate.OneOf(ROLES))
    unit = fields.Nested(UnitRefSchema)


class DeadlineSchema(Schema):
    due_at = fields.DateTime()
    remaining_seconds = fields.Float(metadata={"description": "working (or, for urgent work, wall) seconds left; "
                                                              "negative when overdue"})
    remaining = fields.String(metadata={"description": "the same, as text, e.g. '1d 3h 20m' or '-2h'"})
    state = fields.String(validate=validate.OneOf(("normal", "warning", "overdue", "paused")))
    stage = fields.String()
    working_time = fields.Boolean(metadata={"description": "counted in working time on the Chinese calendar"})
    assumed_calendar = fields.Boolean(metadata={"description": "rests on days beyond the official holiday data"})


class WorkItemSchema(Schema):
    id = fields.Integer()
    task = fields.String(attribute="task_name")
    title = fields.String()
    lane = fields.String()
    owner_unit = fields.String(allow_none=True)
    state = fields.String()
    assignee = fields.String(allow_none=True)
    status = fields.String(allow_none=True)
    context = fields.Dict()
    actions = fields.List(fields.String(), metadata={"description": "what the diagram offers on this task"})
    may_act = fields.Boolean(metadata={"description": "whether the signed-in user may do these actions"})
    deadline = fields.Nested(DeadlineSchema, allow_none=True)
    created_at = fields.DateTime()
    closed_at = fields.DateTime(allow_none=True)
    closed_by = fields.String(allow_none=True)
    action = fields.String(allow_none=True)


class CallBriefSchema(Schema):
    """What a queue row shows of its call."""

    number = fields.String()
    status = fields.String(validate=validate.OneOf(STATUSES))
    level = fields.String(validate=validate.OneOf(LEVELS))
    category = fields.String(attribute="category_code")
    description = fields.String()
    location = fields.String()
    urgency = fields.String(validate=validate.OneOf(URGENCIES))
    community = fields.String(attribute="community_code")
    street = fields.String(attribute="street_code")
    problem_ticket = fields.Boolean()
    reopen_count = fields.Integer()
    created_at = fields.DateTime()


class CallSchema(CallBriefSchema):
    """A call in full: the brief fields and the rest."""

    latitude = fields.Float(allow_none=True)
    longitude = fields.Float(allow_none=True)
    photos = fields.List(fields.String())
    reporter = fields.String()
    parent = fields.String(allow_none=True)
    department = fields.String(attribute="department_code", allow_none=True)
    merged_into = fields.String(allow_none=True)
    handling_level = fields.String()
    suggested_lead = fields.String(allow_none=True)
    suggested_assists = fields.List(fields.String())
    sla_class = fields.String()
    rework_count = fields.Integer()
    result = fields.String(allow_none=True)
    satisfaction = fields.String(allow_none=True)
    first_contact_at = fields.DateTime(allow_none=True, metadata={"description": "when the department first "
                                                                                 "contacted the caller (action "
                                                                                 "`contact`)"})
    overdue = fields.Boolean(metadata={"description": "an open work item of the call is past its deadline"})
    updated_at = fields.DateTime()
    closed_at = fields.DateTime(allow_none=True)


class FiledCallSchema(CallSchema):
    open_items = fields.List(fields.Nested(WorkItemSchema), metadata={"description": "the call's open work now"})


class CallPageSchema(Schema):
    items = fields.List(fields.Nested(CallSchema))
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()


class AuditEventSchema(Schema):
    id = fields.Integer()
    occurred_at = fields.DateTime()
    actor = fields.String()
    action = fields.String()
    work_item_id = fields.Integer(allow_none=True)
    old = fields.Dict(allow_none=True)
    new = fields.Dict(allow_none=True)
    detail = fields.Dict(allow_none=True)


class ClockSchema(Schema):
    id = fields.Integer()
    stage = fields.String()
    unit = fields.String()
    round = fields.Integer()
    state = fields.String()
    outcome = fields.String(allow_none=True)
    work_item_id = fields.Integer(allow_none=True)
    started_at = fields.DateTime()
    warn_at = fields.DateTime()
    due_at = fields.DateTime()
    overdue_at = fields.DateTime()
    warned_at = fields.DateTime(allow_none=True)
    breached_at = fields.DateTime(allow_none=True)
    stopped_at = fields.DateTime(allow_none=True)
    extension_days = fields.Integer()
    paused_seconds = fields.Float()
    assumed_calendar = fields.Boolean()
    remaining_seconds = fields.Float(allow_none=True)
    remaining = fields.String(allow_none=True)


class AttachmentSchema(Schema):
    id = fields.Integer()
    url = fields.String()
    filename = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    purpose = fields.String()
    sha256 = fields.String()
    uploaded_by = fields.String()
    created_at = fields.DateTime()


class CallDetailSchema(CallSchema):
    open_items = fields.List(fields.Nested(WorkItemSchema))
    children = fields.List(fields.Nested(CallSchema))
    timeline = fields.List(fields.Nested(AuditEventSchema))
    clocks = fields.List(fields.Nested(ClockSchema))
    attachments = fields.List(fields.Nested(AttachmentSchema))


class QueueEntrySchema(Schema):
    item = fields.Nested(WorkItemSchema)
    call = fields.Nested(CallSchema)


class QueueRowSchema(Schema):
    item = fields.Nested(WorkItemSchema)
    call = fields.Nested(CallBriefSchema)


class QueuePageSchema(Schema):
    items = fields.List(fields.Nested(QueueRowSchema))
    total = fields.Integer(metadata={"description": "items in the queue, counted up to 1000"})
    total_exact = fields.Boolean(metadata={"description": "false: there are more than 1000 (total is 1000)"})
    page = fields.Integer()
    per_page = fields.Integer()


class ActionResultSchema(Schema):
    call = fields.Nested(CallBriefSchema)
    item = fields.Nested(WorkItemSchema)
    action = fields.String()
    opened = fields.List(fields.Nested(WorkItemSchema), metadata={"description": "work items this step opened"})
    closed = fields.List(fields.Nested(WorkItemSchema), metadata={"description": "work items this step closed"})


class PageArgsSchema(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100000))
    per_page = fields.Integer(load_default=20, validate=validate.Range(min=1, max=200))
