"""My work queue and every action of domain.md §2 on a work item."""
from __future__ import annotations

from flask import g
from flask_smorest import Blueprint
from marshmallow import INCLUDE, Schema, fields, validate

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

from .present import attachment_out, call_brief, call_out, item_out
from .schemas import ActionResultSchema, PageArgsSchema, QueueEntrySchema, QueuePageSchema
from .security import ctx

blp = Blueprint("work", __name__, url_prefix="/api/v1/work", description="Work items: my queue and actions")

ACTION_NAMES = sorted({a for task in ACTIONS.values() for a in task})
_DOC = "\n".join(f"* `{task}`: " + ", ".join(f"`{a}` ({', '.join(spec.schema().fields) or 'no fields'})"
                                            for a, spec in actions.items())
                 for task, actions in ACTIONS.items())


class ActionBody(Schema):
    """The action's own fields (see the list in the operation's description); validated per action."""

    class Meta:
        unknown = INCLUDE


class ActionPath(Schema):
    action = fields.String(required=True, validate=validate.OneOf(ACTION_NAMES))


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
        from engine.errors import Forbidden

        raise Forbidden(f"{c.user.username} may not see work item {item_id}")
    deadline = item_deadlines(c, [item]).get(item.id)
    return {"item": item_out(item, c.user, deadline), "call": call_out(call)}


@blp.route("/<int:item_id>/actions/<string:action>", methods=["POST"])
@blp.arguments(ActionBody)
@blp.response(200, ActionResultSchema)
@blp.doc(description="Do an action on a work item. The task decides which actions exist and what they take:\n\n"
                     + _DOC + "\n\nEvidence files: upload with purpose=evidence, then pass their ids in `evidence`.")
def act(body, item_id, action):
    """Act on a work item (sign, dispute, request_extension, done, verify, rate, reassign, ...)"""
    def attempt():
        c = ctx()
        data = dict(body)
        evidence = []
        if isinstance(data.get("evidence"), list) and all(isinstance(e, int) for e in data["evidence"]):
            evidence = claim_uploads(g.db, data["evidence"], username=c.actor, purposes={"evidence", "photo"},
                                     field="evidence")
        return c, act_with_evidence(c, item_id, action, data, evidence, lambda a: attachment_out(a)["url"])

    c, out = retry_stale(g.db, attempt)  # lost an optimistic lock to a simultaneous action: re-read and retry
    return {"call": call_brief(out.call), "item": item_out(out.item, c.user), "action": action,
            "opened": [item_out(w, c.user) for w in out.opened], "closed": [item_out(w, c.user) for w in out.closed]}
