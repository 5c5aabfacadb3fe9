"""Work queues and every action on a work item (dispatchers, department clerks, community staff, grid workers).

* ``/work``: my queue, most urgent deadline first; rulings (disputes, extension
  requests) to decide stand apart at the top.  The queue is a partial, also
  served at ``/work/fragment``, that the page reloads in place (``data-refresh``).
* ``/work/<id>``: one work item: the call's facts, the item's deadline and
  context, and one form per action the task offers, built from the action's
  marshmallow schema (``workflows.actions.ACTIONS``).
* ``POST /work/<id>/<action>``: :func:`workflows.calls.act_on_work_item`, as
  ``web/api/work.py`` does it (evidence uploads included); POST-redirect-GET.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import timedelta

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from marshmallow import fields as mfields
from marshmallow import validate as mvalidate
from sqlalchemy import select

from engine.errors import Conflict, Forbidden, NotFound, StaleInstance, ValidationFailed
from engine.models import WorkItem
from web.api.present import attachment_out
from workflows.actions import ACTIONS, available_actions
from workflows.attachments import AttachmentStore, Upload
from workflows.calls import (
    QueueEntry,
    act_with_evidence,
    call_of_instance,
    count_my_work,
    get_work_item,
    item_deadlines,
    my_work,
    show_call,
)
from workflows.models import Attachment, Call, OrgUnit
from workflows.org import LANE_ROLES, may_act_on, may_see_call
from workflows.queries import possible_duplicates
from workflows.transactions import retry_stale

from .core import login_required, refresh_seconds, register_nav, services, ui_ctx, ui_user
from .errors import error_text
from .labels import ACTION, SATISFACTION, TASK, duration

bp = Blueprint("ui_work", __name__, template_folder="templates")

ACTING_ROLES = ("community_staff", "street_dispatcher", "department_staff", "district_dispatcher")
QUEUE_ROLES = (*ACTING_ROLES, "grid_worker")
RULINGS = ("rule_dispute", "rule_extension")
PER_PAGE = 50

register_nav("ui_work.queue", _l("My work"), ACTING_ROLES, order=10)
register_nav("ui_work.queue", _l("My work"), ("grid_worker",), order=30)


# ---- small helpers ---------------------------------------------------------------------------------

def call_href(number: str) -> str:
    """The call page (/calls/<number>, another feature's page), found by its URL rule."""
    rules = current_app.extensions.setdefault("ui_work_call_rule", {})
    if "endpoint" not in rules:
        rules["endpoint"] = next((r.endpoint for r in current_app.url_map.iter_rules()
                                  if re.fullmatch(r"/calls/<(?:string:)?number>", r.rule)
                                  and r.endpoint.startswith("ui")), None)
    if rules["endpoint"]:
        return url_for(rules["endpoint"], number=number)
    return "/calls/" + number


def remaining_text(deadline) -> str:
    if deadline is None:
        return ""
    if deadline.remaining < timedelta(0):
        return _("%(time)s over", time=duration(-deadline.remaining))
    return _("%(time)s left", time=duration(deadline.remaining))


HISTORY_EVENTS = {"call.filed": _l("Call filed"), "call.child_opened": _l("Child ticket opened"),
                  "event.sla_warning": _l("Deadline warning"), "event.sla_breach": _l("Deadline missed: reminder sent"),
                  "event.sla_overdue": _l("Long overdue: supervised and escalated"),
                  "supervision.urge": _l("Reminder from the supervisor"),
                  "supervision.supervise": _l("Formal supervision order")}


def history_label(action: str) -> str:
    if action in HISTORY_EVENTS:
        return str(HISTORY_EVENTS[action])
    task, _sep, act = action.partition(".")
    if task in TASK and act in ACTION:
        return f"{TASK[task]} · {ACTION[act]}"
    return action


@bp.context_processor
def _helpers():
    return {"call_href": call_href, "remaining_text": remaining_text, "history_label": history_label,
            "ordered_actions": ordered_actions, "refresh_seconds": refresh_seconds()}


def departments() -> list[str]:
    """Codes of the active departments (for the lead, assist and reassign choices)."""
    if "ui_work_departments" not in g:
        g.ui_work_departments = list(g.db.scalars(select(OrgUnit.code).where(
            OrgUnit.kind == "department", OrgUnit.active.is_(True)).order_by(OrgUnit.id)))
    return g.ui_work_departments


# ---- the queue -------------------------------------------------------------------------------------

def rulings_of(ctx) -> list[QueueEntry]:
    """Disputes and extension requests this user's command centre must rule on (they have no deadline of
    their own, so the deadline-ordered queue lists them last: they are shown apart, oldest first)."""
    lanes = [lane for lane, roles in LANE_ROLES.items() if ctx.user.role in roles]
    if not lanes:
        return []
    rows = ctx.session.execute(
        select(WorkItem, Call).join(Call, Call.instance_id == WorkItem.instance_id)
        .where(WorkItem.owner_unit == ctx.user.unit.code, WorkItem.state == "open", WorkItem.lane.in_(lanes),
               WorkItem.task_name.in_(RULINGS))
        .order_by(WorkItem.created_at, WorkItem.id).limit(100)).all()
    deadlines = item_deadlines(ctx, [item for item, _call in rows])
    return [QueueEntry(item, call, available_actions(item), deadlines.get(item.id)) for item, call in rows]


def queue_data() -> dict:
    ctx = ui_ctx()
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    total, exact = count_my_work(ctx)
    rulings = rulings_of(ctx)
    entries = [e for e in my_work(ctx, limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
               if e.item.task_name not in RULINGS]
    pages = max(math.ceil(total / PER_PAGE), 1)
    return {"entries": entries, "rulings": rulings, "total": total, "exact": exact, "page": page,
            "pages": pages, "others": max(total - len(rulings), 0)}


@bp.route("/work")
@login_required(*QUEUE_ROLES)
def queue():
    return render_template("work/queue.html", **queue_data())


@bp.route("/work/fragment")
def fragment():
    """The queue's partial, reloaded in place by the page every few seconds."""
    user = ui_user()
    if user is None:
        return "", 401
    if user.role not in QUEUE_ROLES:
        return "", 403
    return render_template("work/_queue.html", **queue_data())


# ---- forms from the actions' schemas -------------------------------------------------------------

FIELD_LABELS = {"note": _l("Note"), "reason": _l("Reason"), "result": _l("Result"),
                "evidence": _l("Evidence (photos or PDF)"), "into": _l("Merge into"),
                "lead": _l("Lead department"), "assists": _l("Assisting departments"),
                "days": _l("Extra working days"), "department": _l("New department"),
                "satisfaction": _l("Caller's satisfaction"), "resolved": _l("Was the problem resolved?"),
                "comment": _l("Comment")}
ACTION_HELP = {
    ("street_triage", "dispatch"): _l("Send it to one lead department and any assisting departments; each signs "
                                      "for it."),
    ("street_triage", "handle"): _l("The street's own teams handle it."),
    ("street_triage", "escalate"): _l("Call up the district: for problems the street cannot solve."),
    ("street_triage", "void"): _l("Not a valid call (a test, a prank, not a public matter)."),
    ("street_triage", "merge"): _l("The same problem as an earlier open call: this call closes and follows that "
                                   "one."),
    ("community_handle", "handle"): _l("The community has solved it; it goes to verification."),
    ("community_handle", "call_street"): _l("The community cannot solve it: ask the street command centre."),
    ("street_handle", "done"): _l("Report the street's result with evidence; it goes to verification."),
    ("sign", "sign"): _l("Confirm that your department has received the work. Work cannot be refused."),
    ("sign", "dispute"): _l("Responsibility is unclear: the command centre rules on it. Your deadline keeps "
                            "running."),
    ("resolve", "done"): _l("Report the result with evidence; it goes to verification."),
    ("resolve", "hang"): _l("Long engineering work: the deadline clock pauses until you resume."),
    ("resolve", "dispute"): _l("Responsibility is unclear: the command centre rules on it. Your deadline keeps "
                               "running."),
    ("resolve", "request_extension"): _l("Ask the command centre for more working days (at most 10)."),
    ("resolve", "contact"): _l("Record that you have contacted the caller (the first contact time counts)."),
    ("on_hold", "resume"): _l("Continue the work; the deadline clock runs again."),
    ("assist_work", "done"): _l("Report your part of the work as an assisting department."),
    ("rule_dispute", "confirm"): _l("Keep the department on it, optionally adding assisting departments."),
    ("rule_dispute", "reassign"): _l("Move the work to another department."),
    ("rule_extension", "approve"): _l("Extend the department's deadline by the days it asked for."),
    ("rule_extension", "refuse"): _l("The deadline stays as it is."),
    ("verify", "pass"): _l("The problem is solved on site."),
    ("verify", "fail"): _l("Not solved: the work goes back for rework."),
    ("feedback", "rate"): _l("Record the caller's feedback; an unsatisfied or unresolved call is reopened."),
    ("district_coordinate", "coordinate"): _l("Name a lead and assisting departments; each gets a child ticket."),
}
DANGER = {"void", "fail", "refuse", "escalate"}
PRIMARY_ORDER = ("dispatch", "sign", "done", "pass", "rate", "coordinate", "confirm", "approve", "resume", "handle")
YES_NO = (("true", _l("Yes")), ("false", _l("No")))


@dataclass
class FormField:
    name: str
    widget: str  # textarea, text, number, select, yesno, files, department, departments, merge, lines
    label: str
    required: bool = False
    options: list = field(default_factory=list)  # [(value, label)]
    minimum: int | None = None
    maximum: int | None = None
    maxlength: int | None = None
    is_list: bool = False


@dataclass
class ActionForm:
    name: str
    label: str
    help: str
    fields: list[FormField]
    multipart: bool
    style: str
    open: bool = False


_SCHEMA_FIELDS: dict[type, dict] = {}


def schema_fields(schema_cls) -> dict[str, mfields.Field]:
    if schema_cls not in _SCHEMA_FIELDS:
        _SCHEMA_FIELDS[schema_cls] = dict(schema_cls().fields)
    return _SCHEMA_FIELDS[schema_cls]


def _validators(f: mfields.Field) -> list:
    return list(getattr(f, "validators", []) or [])


def _limits(f: mfields.Field) -> tuple[int | None, int | None, int | None, list]:
    minimum = maximum = maxlength = None
    choices: list = []
    for v in _validators(f):
        if isinstance(v, mvalidate.Range):
            minimum, maximum = v.min, v.max
        elif isinstance(v, mvalidate.Length) and not isinstance(f, mfields.List):
            maxlength = v.max
        elif isinstance(v, mvalidate.OneOf):
            choices = list(v.choices)
    return minimum, maximum, maxlength, choices


def build_fields(task: str, action: str, item: WorkItem, call: Call, duplicates) -> list[FormField]:
    spec = ACTIONS[task][action]
    slot_dept = (item.context.get("slot") or {}).get("department")
    out = []
    for name, f in schema_fields(spec.schema).items():
        minimum, maximum, maxlength, choices = _limits(f)
        ff = FormField(name, "textarea", str(FIELD_LABELS.get(name, name)), required=bool(f.required),
                       minimum=minimum, maximum=maximum, maxlength=maxlength, is_list=isinstance(f, mfields.List))
        if name == "evidence":
            ff.widget = "files"
        elif name == "assists":
            ff.widget = "departments"
            ff.options = [c for c in departments() if c != slot_dept]
        elif name in ("lead", "department"):
            ff.widget = "department"
            ff.required = True  # the UI always names it (the suggestion is preselected)
            ff.options = [c for c in departments() if not (name == "department" and c == slot_dept)]
        elif name == "into":
            ff.widget = "merge"
            ff.options = duplicates
        elif isinstance(f, mfields.Boolean):
            ff.widget, ff.options = "yesno", [(v, str(label)) for v, label in YES_NO]
        elif isinstance(f, mfields.Integer):
            ff.widget = "number"
        elif choices:
            ff.widget = "select"
            ff.options = [(c, str(SATISFACTION.get(c, c))) for c in choices]
        elif ff.is_list:
            ff.widget = "lines"
        elif maxlength is not None and maxlength <= 200:
            ff.widget = "text"
        out.append(ff)
    return out


def ordered_actions(offered: list[str]) -> list[str]:
    """The usual decision first, then the diagram's order, the destructive ones last."""
    return sorted(offered, key=lambda a: (a in DANGER, PRIMARY_ORDER.index(a) if a in PRIMARY_ORDER else 99,
                                          offered.index(a)))


def action_forms(item: WorkItem, call: Call, duplicates, open_action: str | None = None) -> list[ActionForm]:
    names = ordered_actions(available_actions(item))
    if open_action is None:
        open_action = next((a for a in PRIMARY_ORDER if a in names), names[0] if names else None)
    forms = []
    for name in names:
        fields_ = build_fields(item.task_name, name, item, call, duplicates)
        help_ = ACTION_HELP.get((item.task_name, name))
        forms.append(ActionForm(name, str(ACTION.get(name, name)), str(help_) if help_ else "", fields_,
                                any(f.widget == "files" for f in fields_),
                                "danger" if name in DANGER else "primary", open=(name == open_action)))
    return forms


def default_values(item: WorkItem, call: Call) -> dict[str, dict]:
    """What the forms show before anyone types: the routing table's suggestion for a dispatch."""
    values: dict[str, dict] = {}
    if item.task_name == "street_triage":
        values["dispatch"] = {"lead": call.suggested_lead or "", "assists": list(call.suggested_assists or [])}
    if item.task_name == "district_coordinate":
        lead = item.context.get("supervised_department") or call.suggested_lead or ""
        values["coordinate"] = {"lead": lead, "assists": [a for a in call.suggested_assists or [] if a != lead]}
    return values


def parse_form(task: str, action: str, form) -> dict:
    """The submitted form as the action's schema expects it; bad values pass through for the schema to reject."""
    data: dict = {}
    for name, f in schema_fields(ACTIONS[task][action].schema).items():
        if name == "evidence":
            continue
        if name == "into":
            value = (form.get("into_other") or "").strip() or (form.get("into") or "").strip()
            if value:
                data[name] = value
        elif isinstance(f, mfields.List):
            values = form.getlist(name)
            if len(values) == 1 and "\n" in values[0]:
                values = values[0].splitlines()
            data[name] = [v.strip() for v in values if v.strip()]
        elif isinstance(f, mfields.Boolean):
            value = (form.get(name) or "").strip()
            if value:
                data[name] = {"true": True, "false": False}.get(value, value)
        elif isinstance(f, mfields.Integer):
            value = (form.get(name) or "").strip()
            if value:
                data[name] = int(value) if re.fullmatch(r"-?\d{1,9}", value) else value
        else:
            value = form.get(name)
            if value is not None:
                data[name] = value.strip()
    return data


def form_values(task: str, action: str, form) -> dict:
    """The input to show again after a validation error."""
    values = {}
    for name, f in schema_fields(ACTIONS[task][action].schema).items():
        values[name] = form.getlist(name) if isinstance(f, mfields.List) else form.get(name, "")
    values["into_other"] = form.get("into_other", "")
    return values


def split_errors(exc: ValidationFailed, forms: list[ActionForm], action: str, submitted) -> tuple[dict, list[str]]:
    """Field errors (translated) next to their fields; the rest for the top of the form."""
    form = next((f for f in forms if f.name == action), None)
    by_name = {f.name: f for f in form.fields} if form else {}
    fields_, general = {}, []
    for key, messages in (exc.field_errors or {}).items():
        if isinstance(messages, dict):  # a list field's per-item errors: {index: [messages]}
            messages = [m for sub in messages.values() for m in (sub if isinstance(sub, list) else [sub])]
        given = submitted.getlist(key) + (submitted.getlist("into_other") if key == "into" else [])
        empty = not any(v.strip() for v in given)
        texts = [error_text(m, is_list=by_name[key].is_list if key in by_name else False, empty=empty)
                 for m in (messages if isinstance(messages, list) else [messages])]
        if key in by_name:
            fields_[key] = texts
        else:
            general.extend(texts)
    if not exc.field_errors:
        general.append(error_text(exc))
    return fields_, general


# ---- the work-item page ----------------------------------------------------------------------------

ATTACHMENT_URL = re.compile(r"/api/v1/attachments/(\d+)$")


def files_of(urls: list[str]) -> list[dict]:
    """Photos and evidence by URL: images get a thumbnail, other files (PDF) a link."""
    ids = {}
    for url in urls or []:
        m = ATTACHMENT_URL.search(str(url))
        if m:
            ids[url] = int(m[1])
    types = {i: kind for i, kind in g.db.execute(select(Attachment.id, Attachment.content_type)
                                                 .where(Attachment.id.in_(set(ids.values()))))} if ids else {}
    out = []
    for url in urls or []:
        kind = types.get(ids.get(url))
        image = kind.startswith("image/") if kind else not str(url).lower().endswith(".pdf")
        out.append({"url": url, "image": image})
    return out


def load_item(item_id: int):
    """(item, call) for a user who may see the call, else 404/403."""
    try:
        item = get_work_item(g.db, item_id)
        call = call_of_instance(g.db, item.instance_id)
    except NotFound:
        abort(404)
    if not may_see_call(g.db, ui_user(), call):
        abort(403)
    return item, call


def item_page(item: WorkItem, call: Call, *, open_action: str | None = None, values: dict | None = None,
              errors: dict | None = None, general: dict | None = None, status: int = 200):
    ctx = ui_ctx()
    user = ctx.user
    view = show_call(ctx, call.number)
    deadline = item_deadlines(ctx, [item]).get(item.id) if item.state == "open" else None
    may_act = item.state == "open" and may_act_on(user, item.lane, item.owner_unit)
    duplicates = []
    if may_act and "merge" in available_actions(item):
        duplicates = possible_duplicates(ctx, call)
    forms = action_forms(item, call, duplicates, open_action) if may_act else []
    shown = default_values(item, call)
    for name, given in (values or {}).items():
        shown[name] = given
    others = [(wi, view.deadlines.get(wi.id)) for wi in view.open_items if wi.id != item.id]
    done_reports = [e for e in view.timeline
                    if e.action.endswith((".done", ".handle")) and (e.detail or {}).get("result")]
    history = [e for e in view.timeline if e.action != "process_started"]
    return render_template(
        "work/item.html", item=item, call=call, deadline=deadline, may_act=may_act, forms=forms,
        values=shown, errors=errors or {}, general=general or {}, duplicates=duplicates, others=others,
        photos=files_of(call.photos), reports=[(e, files_of((e.detail or {}).get("evidence") or []))
                                               for e in done_reports],
        history=history[-12:][::-1], history_total=len(history), slot=item.context.get("slot") or {},
        departments=departments()), status


@bp.route("/work/<int:item_id>")
@login_required()
def item(item_id: int):
    found, call = load_item(item_id)
    return item_page(found, call)


def _read_uploads(store: AttachmentStore) -> list[Upload]:
    uploads = []
    for f in request.files.getlist("evidence"):
        try:
            if f.filename:
                uploads.append(Upload(f.filename, f.read(store.max_bytes + 1)))
        finally:
            f.close()
    return uploads


def _next_page(out, user, call: Call) -> str:
    """Where to go after an action: the same item if still mine, the next step of it if mine, my queue if
    I have work left, else the call."""
    if out.item.state == "open" and may_act_on(user, out.item.lane, out.item.owner_unit):
        return url_for("ui_work.item", item_id=out.item.id)
    follow = next((wi for wi in out.opened if wi.state == "open" and may_act_on(user, wi.lane, wi.owner_unit)),
                  None)
    if follow is not None:
        return url_for("ui_work.item", item_id=follow.id)
    total, _exact = count_my_work(ui_ctx())
    return url_for("ui_work.queue") if total else call_href(call.number)


@bp.route("/work/<int:item_id>/<string:action>", methods=["POST"])
@login_required()
def act(item_id: int, action: str):
    found, call = load_item(item_id)
    if action not in ACTIONS.get(found.task_name, {}):
        abort(404)
    task, number = found.task_name, call.number
    svc = services()
    store = AttachmentStore(svc.settings.attachment_dir, int(svc.settings.max_upload_mb * 1024 * 1024))
    wants_files = "evidence" in schema_fields(ACTIONS[task][action].schema)
    uploads = _read_uploads(store) if wants_files else []
    def attempt():
        ctx = ui_ctx()
        data = parse_form(task, action, request.form)
        saved = []
        if uploads:
            saved = store.save(g.db, uploads, purpose="evidence", actor=ctx.actor, at=ctx.clock.now(),
                               field="evidence")
        return act_with_evidence(ctx, item_id, action, data, saved, lambda a: attachment_out(a)["url"])

    try:  # lost an optimistic lock to a simultaneous action: re-read and retry once
        out = retry_stale(g.db, attempt, attempts=2)
    except StaleInstance:
        flash(_("Someone changed this call at the same moment. Please try again."), "error")
        return redirect(url_for("ui_work.item", item_id=item_id))
    except ValidationFailed as exc:
        g.db.rollback()
        found, call = load_item(item_id)
        forms = action_forms(found, call, [], action)
        field_errors, general = split_errors(exc, forms, action, request.form)
        if uploads:
            general.append(_("Choose the evidence files again: they were not kept."))
        return item_page(found, call, open_action=action,
                         values={action: form_values(task, action, request.form)},
                         errors={action: field_errors}, general={action: general}, status=422)
    except Conflict as exc:
        g.db.rollback()
        flash(_("Nothing was changed: someone acted on this item first, or it has moved on (%(detail)s).",
                detail=error_text(exc)), "warning")
        return redirect(url_for("ui_work.queue"))
    except Forbidden:
        g.db.rollback()
        abort(403)
    except NotFound:
        g.db.rollback()
        abort(404)
    user = ui_user()
    flash(_("%(action)s: done for %(number)s.", action=ACTION.get(action, action), number=number), "info")
    return redirect(_next_page(out, user, out.call))
