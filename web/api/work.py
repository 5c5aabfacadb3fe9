"""My work queue and every action of domain.md §2 on a work item."""
from __future__ import annotations

from flask import g
from flask_smorest import Blueprint
from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from engine.errors import Forbidden, ValidationFailed
from workflows.actions import ACTIONS
from workflows.attachments import claim_uploads
from workflows.calls import (
    act_with_evidence,
    call_of_instance,
    count_my_work,
    get_work_item,
    item_deadlines,
    my_work,
)
from workflows.org import may_see_call
from workflows.transactions import retry_stale

from .errors import flatten
from .present import attachment_out, call_brief, call_out, item_out
from .schemas import MAX_ID, ActionResultSchema, PageArgsSchema, QueueEntrySchema, QueuePageSchema
from .security import ctx

blp = Blueprint("work", __name__, url_prefix="/api/v1/work", description="Work items: my queue and actions")

# ---- the action contract, generated from the action table (workflows.actions.ACTIONS) ---------------------
# Each action of each task validates its data with a marshmallow schema there; the OpenAPI document is built
# from those same schemas, so a new action (or a new field) is documented the moment it exists.

ACTION_NAMES = sorted({a for task in ACTIONS.values() for a in task})
COMPONENTS = "#/components/schemas/"


class EvidenceIdsSchema(Schema):
    """How the API takes ``evidence``: ids of the caller's uploads (their links go to the action)."""

    evidence = fields.List(fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_ID)),
                           load_default=list, metadata={"description": "ids of your uploads (POST "
                                                                       "/api/v1/attachments, purpose=evidence): "
                                                                       "photos or PDF"})


def _api_form(schema: type[Schema]) -> type[Schema]:
    """An action's schema as the API takes it: the same fields and rules, under the name the OpenAPI document
    gives it (``<Name>ActionBody``), with ``evidence`` as upload ids instead of the links they become."""
    attrs: dict = {}
    own = schema._declared_fields.get("evidence")
    if own is not None:  # the action's own limits on the list (how many), the API's items (upload ids)
        attrs["evidence"] = fields.List(fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_ID)),
                                        load_default=list, validate=list(own.validators),
                                        metadata=EvidenceIdsSchema._declared_fields["evidence"].metadata)
    return type(schema.__name__.removesuffix("Schema") + "ActionBodySchema", (schema,), attrs)


# each action schema of the table -> its API form (several actions share a schema: one component each)
API_FORMS: dict[type[Schema], type[Schema]] = {
    schema: _api_form(schema)
    for schema in dict.fromkeys(spec.schema for actions in ACTIONS.values() for spec in actions.values())}


def body_component(task: str, action: str) -> str:
    """The OpenAPI component name of the data ``action`` takes on ``task``."""
    return API_FORMS[ACTIONS[task][action].schema].__name__.removesuffix("Schema")


def _field_list(schema: type[Schema]) -> str:
    names = [(f.data_key or name) + ("*" if f.required else "") for name, f in schema._declared_fields.items()
             if not f.dump_only]
    return ", ".join(f"`{n}`" for n in names) or "no fields: send `{}`"


ACTION_BODIES = {action: {task: {"$ref": COMPONENTS + body_component(task, action)}
                          for task, actions in ACTIONS.items() if action in actions}
                 for action in ACTION_NAMES}
_DOC = "\n".join(
    ["| task | action | body | fields (* required) |", "|---|---|---|---|"]
    + [f"| `{task}` | `{action}` | `{body_component(task, action)}` | {_field_list(API_FORMS[spec.schema])} |"
       for task, actions in ACTIONS.items() for action, spec in actions.items()])

ACTION_PARAMETER = {
    "in": "path", "name": "action", "required": True,
    "schema": {"type": "string", "enum": ACTION_NAMES},
    "description": "the action; which ones a work item offers is in its `actions` (the task's, see the table)"}
ACTION_REQUEST_BODY = {
    "required": True,
    "description": "the action's data: the body schema of the work item's task and this action (the table "
                   "in the description; by action and task in `x-huying-action-bodies`)",
    "content": {"application/json": {"schema": {"anyOf": list(API_FORMS.values())}}},
    "x-huying-action-bodies": ACTION_BODIES,
}


class ActionBody(Schema):
    """Parsed as any JSON object here; validated against the action's own schema once the task is known."""

    class Meta:
        unknown = INCLUDE


def _evidence_ids(data: dict) -> list[int]:
    """The upload ids in ``evidence`` (422 with the field named if it is not a list of ids)."""
    if "evidence" not in data:
        return []
    try:
        return EvidenceIdsSchema().load({"evidence": data["evidence"]})["evidence"]
    except ValidationError as exc:
        errors = flatten(exc.messages)
        raise ValidationFailed("evidence: a list of upload ids (POST /api/v1/attachments first)",
                               field_errors=errors) from None


@blp.route("", methods=["GET"])
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, QueuePageSchema)
def queue(args):
    """My work queue: open items my role and unit may act on, most urgent deadline first"""
    c = ctx()
    per_page = args["per_page"]
    entries = my_work(c, limit=per_page, offset=(args["page"] - 1) * per_page)
    total, exact = count_my_work(c)
    return {"items": [{"item": item_out(e.item, c.user, e.deadline), "call": call_brief(e.call)} for e in entries],
            "total": total, "total_exact": exact, "page": args["page"], "per_page": per_page}


@blp.route("/<int:item_id>", methods=["GET"])
@blp.response(200, QueueEntrySchema)
def get_item(item_id):
    """One work item (of a call you may see) with its actions and deadline"""
    c = ctx()
    item = get_work_item(g.db, item_id)
    call = call_of_instance(g.db, item.instance_id)
    if not may_see_call(g.db, c.user, call):
        raise Forbidden(f"{c.user.username} may not see work item {item_id}")
    deadline = item_deadlines(c, [item]).get(item.id)
    return {"item": item_out(item, c.user, deadline), "call": call_out(call)}


@blp.route("/<int:item_id>/actions/<string:action>", methods=["POST"], parameters=[ACTION_PARAMETER])
@blp.arguments(ActionBody)
@blp.response(200, ActionResultSchema)
@blp.alt_response(403, response="FORBIDDEN", description="your role or unit may not act on this work item")
@blp.alt_response(404, response="NOT_FOUND", description="no such work item")
@blp.alt_response(409, response="CONFLICT", description="the work item is already done, or the process does not "
                                                         "allow this action now (e.g. someone acted first)")
@blp.doc(requestBody=ACTION_REQUEST_BODY,
         description="Do an action on a work item. The task decides which actions exist and what they take "
                     "(a field the action does not know is refused with 422):\n\n" + _DOC
                     + "\n\nEvidence files: upload with purpose=evidence, then pass their ids in `evidence`.")
def act(body, item_id, action):
    """Act on a work item (sign, dispute, request_extension, done, verify, rate, reassign, ...)"""
    def attempt():
        c = ctx()
        data = dict(body)
        ids = _evidence_ids(data)
        evidence = claim_uploads(g.db, ids, username=c.actor, purposes={"evidence", "photo"}, field="evidence")
        return c, act_with_evidence(c, item_id, action, data, evidence, lambda a: attachment_out(a)["url"])

    c, out = retry_stale(g.db, attempt)  # lost an optimistic lock to a simultaneous action: re-read and retry
    return {"call": call_brief(out.call), "item": item_out(out.item, c.user), "action": action,
            "opened": [item_out(w, c.user) for w in out.opened], "closed": [item_out(w, c.user) for w in out.closed]}
