"""Administration pages (admin role): org tree and users, process and routing versions, SLA policy, calendar.

Every page renders from the service layer the admin API uses (``workflows.admin``
for units and users, scoped to the admin's district; ``engine.definitions``,
``engine.sla`` for versions, the policy and the calendar) and posts plain forms
(POST-redirect-GET).  A refused change rolls back and shows the service's
message next to the field it names.  Scripts add the routing-table editor
(dmn-js) and the side-by-side diagrams of a version diff (bpmn-js).
"""
from __future__ import annotations

import json
from collections import defaultdict
from datetime import date
from pathlib import PurePosixPath

from flask import Blueprint, abort, flash, g, jsonify, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from engine.calendar import PACKAGE_YEARS
from engine.definitions import MAX_FILE_BYTES, deploy, get_definition, latest_definition, list_definitions
from engine.errors import Conflict, EngineError, ValidationFailed
from engine.models import CalendarOverride, SlaClock, SlaPolicy
from engine.sla import PolicySchema, deploy_policy, latest_policy, set_override
from workflows import admin as svc
from workflows import definitions_diff as dd
from workflows.models import ROLE_UNIT_KIND, ROLES

from .core import login_required, register_nav, services, ui_clock, ui_ctx
from .errors import error_text, field_texts

bp = Blueprint("ui_admin", __name__, url_prefix="/admin")
register_nav("ui_admin.overview", _l("Administration"), {"admin"}, order=10)

SECTIONS = (("ui_admin.overview", _l("Overview")), ("ui_admin.org", _l("Organisation")),
            ("ui_admin.users", _l("Users")), ("ui_admin.versions", _l("Process versions")),
            ("ui_admin.routing", _l("Routing table")), ("ui_admin.sla", _l("SLA policy")),
            ("ui_admin.calendar", _l("Holiday calendar")))
KIND_NAMES = {"district": _l("District"), "street": _l("Street"), "community": _l("Community"),
              "department": _l("Department")}
ELEMENT_KINDS = {"userTask": _l("Human task"), "scriptTask": _l("Script task"), "serviceTask": _l("Service task"),
                 "businessRuleTask": _l("Business rule task"), "callActivity": _l("Call activity"),
                 "subProcess": _l("Sub-process"), "startEvent": _l("Start event"), "endEvent": _l("End event"),
                 "boundaryEvent": _l("Boundary event"), "intermediateCatchEvent": _l("Catch event"),
                 "intermediateThrowEvent": _l("Throw event"), "exclusiveGateway": _l("Exclusive gateway"),
                 "parallelGateway": _l("Parallel gateway"), "inclusiveGateway": _l("Inclusive gateway"),
                 "eventBasedGateway": _l("Event-based gateway"), "sequenceFlow": _l("Sequence flow"),
                 "lane": _l("Lane"), "participant": _l("Pool"), "process": _l("Process"), "signal": _l("Signal"),
                 "message": _l("Message"), "decision": _l("Decision"), "input": _l("Table input"),
                 "output": _l("Table output"), "rule": _l("Routing rule")}
SLA_CLASSES = {"standard": _l("Standard"), "complex": _l("Complex"), "urgent": _l("Urgent")}
STAGE_ORDER = ("community_handle", "triage", "district_coordinate", "sign", "resolve", "verify", "feedback")
OPEN = ("running", "paused")
MAX_DEPLOY_FILES = 20
PER_PAGE = 50


@bp.before_request
@login_required("admin")
def _admins_only():
    """Every page here is for admins (others: 403, or the sign-in page); a NUL in the address names nothing
    (PostgreSQL text cannot hold it)."""
    if any("\x00" in v for v in [*(request.view_args or {}).values(), *request.args.values()] if isinstance(v, str)):
        abort(404)


@bp.context_processor
def _admin_frame():
    return {"sections": SECTIONS, "loc": local_name, "kind_name": lambda k: str(KIND_NAMES.get(k, k)),
            "element_kind": lambda k: str(ELEMENT_KINDS.get(k, k)), "calendar_data": PACKAGE_YEARS}


def english() -> bool:
    locale = get_locale()
    return locale is not None and locale.language == "en"


def local_name(obj) -> str:
    """An org unit's or category's name in the page language."""
    return (obj.name_en or obj.name) if english() else obj.name


def field_error(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, field_errors={field: [message]})


def _failed(exc: EngineError, field: str | None = None) -> dict[str, list[str]]:
    """Roll back a refused change; its messages by field (``_form`` for the form as a whole)."""
    g.db.rollback()
    errors = field_texts(exc)
    if not errors or isinstance(exc, Conflict):
        errors.setdefault(field or "_form", [error_text(exc)])
    if "_schema" in errors:
        errors.setdefault("_form", []).extend(errors.pop("_schema"))
    return errors


# ---- overview ---------------------------------------------------------------------------------------
def calendar_outlook() -> dict:
    """Open deadlines resting on days beyond the official holiday data, and the years that need a notice."""
    last = PACKAGE_YEARS[1]
    open_q = select(func.count()).select_from(SlaClock).where(SlaClock.state.in_(OPEN))
    assumed_q = open_q.where(SlaClock.assumed_calendar.is_(True))
    assumed = g.db.scalar(assumed_q) or 0
    latest = g.db.scalar(select(func.max(SlaClock.overdue_at)).where(SlaClock.state.in_(OPEN),
                                                                    SlaClock.assumed_calendar.is_(True)))
    now = ui_clock().now()
    years = set(range(last + 1, latest.year + 1)) if latest is not None else set()
    if now.year > last:
        years.add(now.year)
    noticed = {d.year for d in g.db.scalars(select(CalendarOverride.day))}
    noticed |= {d.year for d in services().sla.calendars.file_overrides}
    return {"open": g.db.scalar(open_q) or 0, "assumed": assumed, "last_year": last,
            "years": sorted(y for y in years if y not in noticed), "noticed": sorted(y for y in years if y in noticed)}


@bp.route("")
def overview():
    ctx = ui_ctx()
    units = svc.list_units(ctx)
    total_users, _rows = svc.list_users(ctx, active=True, limit=1)
    latest = {}
    for d in list_definitions(g.db):
        latest[d.process_id] = d
    policy = latest_policy(g.db)
    return render_template("admin/overview.html", outlook=calendar_outlook(), units=len(units),
                           users=total_users, latest=sorted(latest.values(), key=lambda d: d.process_id),
                           policy=policy)


# ---- org tree ---------------------------------------------------------------------------------------
def _org_page(errors=None, values=None, status=200):
    rows = svc.list_units(ui_ctx())
    children = defaultdict(list)
    for r in rows:
        children[r.unit.parent_id].append(r)
    roots = [r for r in rows if r.unit.kind == "district"]
    parents = [r.unit for r in rows if r.unit.kind in ("district", "street") and r.unit.active]
    return render_template("admin/org.html", roots=roots, children=children, parents=parents,
                           errors=errors or {}, values=values or {}), status


@bp.route("/org", methods=["GET", "POST"])
def org():
    if request.method == "GET":
        return _org_page()
    values = {k: request.form.get(k, "").strip() for k in ("kind", "parent", "code", "name", "name_en")}
    try:
        unit = svc.create_unit(ui_ctx(), values)
        g.db.commit()
    except EngineError as exc:
        return _org_page(_failed(exc, "code"), values, 422)
    except IntegrityError:
        g.db.rollback()
        return _org_page({"code": [_("Someone created this code at the same moment.")]}, values, 409)
    flash(_("Created %(name)s (%(code)s).", name=local_name(unit), code=unit.code), "info")
    return redirect(url_for(".org") + f"#unit-{unit.code}")


@bp.route("/org/<string(maxlength=64):code>", methods=["GET", "POST"])
def unit(code):
    ctx = ui_ctx()
    row = svc.unit_row(g.db, svc.get_unit_admin(ctx, code))
    errors, values = {}, {"name": row.unit.name, "name_en": row.unit.name_en}
    if request.method == "POST":
        action = request.form.get("action", "save")
        if action in ("deactivate", "activate"):
            body = {"active": action == "activate"}
        else:
            values = {k: request.form.get(k, "").strip() for k in ("name", "name_en")}
            body = {k: v for k, v in values.items() if v != getattr(row.unit, k)}
        if not body:
            flash(_("Nothing changed."), "info")
            return redirect(url_for(".unit", code=code))
        try:
            svc.update_unit(ctx, code, body)
            g.db.commit()
        except EngineError as exc:
            errors = _failed(exc)
            row = svc.unit_row(g.db, svc.get_unit_admin(ctx, code))
        else:
            flash(_("Saved."), "info")
            return redirect(url_for(".unit", code=code))
    _total, users = svc.list_users(ctx, unit=code, limit=200)
    return render_template("admin/unit.html", row=row, users=users, errors=errors, values=values), \
        (422 if errors else 200)


# ---- users ------------------------------------------------------------------------------------------
def _user_choices():
    rows = svc.list_units(ui_ctx(), active=True)
    by_kind = defaultdict(list)
    for r in rows:
        by_kind[r.unit.kind].append(r.unit)
    return {"roles": ROLES, "role_kind": ROLE_UNIT_KIND, "units_by_kind": by_kind}


@bp.route("/users")
def users():
    args = {"role": request.args.get("role") or None, "unit": request.args.get("unit") or None,
            "q": (request.args.get("q") or "").strip()[:100] or None}
    active = request.args.get("active", "")
    args["active"] = {"yes": True, "no": False}.get(active)
    if args["role"] not in (None, *ROLES):
        args["role"] = None
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    errors = {}
    try:
        total, rows = svc.list_users(ui_ctx(), **args, limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
    except ValidationFailed as exc:
        errors = _failed(exc)
        total, rows = 0, []
    pages = max((total + PER_PAGE - 1) // PER_PAGE, 1)
    query = {k: v for k, v in request.args.items() if k != "page" and v}
    return render_template("admin/users.html", rows=rows, total=total, page=page, pages=pages, query=query,
                           filters={**args, "active": active}, errors=errors, **_user_choices())


@bp.route("/users/new", methods=["GET", "POST"])
def new_user():
    values, errors = {"role": request.args.get("role", ""), "unit": request.args.get("unit", "")}, {}
    if request.method == "POST":
        values = {k: request.form.get(k, "").strip() for k in ("username", "display_name", "role", "unit")}
        try:
            user = svc.create_user(ui_ctx(), {**values, "password": request.form.get("password", "")})
            g.db.commit()
        except EngineError as exc:
            errors = _failed(exc, "username")
        except IntegrityError:
            g.db.rollback()
            errors = {"username": [_("Someone created this username at the same moment.")]}
        else:
            flash(_("User %(name)s created: they can sign in now.", name=user.username), "info")
            return redirect(url_for(".user", username=user.username))
    return render_template("admin/user_form.html", user=None, values=values, errors=errors, **_user_choices()), \
        (422 if errors else 200)


@bp.route("/users/<string(maxlength=64):username>", methods=["GET", "POST"])
def user(username):
    ctx = ui_ctx()
    target = svc.get_user_admin(ctx, username)
    values = {"display_name": target.display_name, "role": target.role, "unit": target.unit.code,
              "active": target.active}
    errors = {}
    if request.method == "POST":
        values = {k: request.form.get(k, "").strip() for k in ("display_name", "role", "unit")}
        values["active"] = request.form.get("active") == "on"
        body = {k: v for k, v in values.items()
                if v != {"display_name": target.display_name, "role": target.role, "unit": target.unit.code,
                         "active": target.active}[k]}
        if request.form.get("password"):
            body["password"] = request.form["password"]
        if not body:
            flash(_("Nothing changed."), "info")
            return redirect(url_for(".user", username=username))
        try:
            _changed, revoked = svc.update_user(ctx, username, body)
            g.db.commit()
        except EngineError as exc:
            errors = _failed(exc)
            target = svc.get_user_admin(ctx, username)
        else:
            flash(_("Saved.") + (" " + _("%(n)s sign-ins were ended.", n=revoked) if revoked else ""), "info")
            return redirect(url_for(".user", username=username))
    return render_template("admin/user_form.html", user=target, values=values, errors=errors,
                           **_user_choices()), (422 if errors else 200)


@bp.route("/users/<string(maxlength=64):username>/revoke", methods=["POST"])
def revoke(username):
    n = svc.revoke_user_tokens(ui_ctx(), username)
    g.db.commit()
    flash(_("%(n)s sign-ins of %(name)s were ended.", n=n, name=username), "info")
    return redirect(url_for(".user", username=username))


# ---- process versions -------------------------------------------------------------------------------
def _versions():
    by_process = defaultdict(list)
    for d in list_definitions(g.db):
        by_process[d.process_id].append(d)
    return dict(sorted(by_process.items()))


def _read_uploads() -> dict[str, bytes]:
    problems, files = [], {}
    uploads = [f for f in request.files.getlist("files") if f.filename]
    if not uploads:
        problems.append(_("Choose one or more .bpmn or .dmn files."))
    if len(uploads) > MAX_DEPLOY_FILES:
        problems.append(_("At most %(n)s files in one bundle.", n=MAX_DEPLOY_FILES))
    for f in uploads[:MAX_DEPLOY_FILES]:
        name = PurePosixPath(f.filename.replace("\\", "/")).name
        data = f.read(MAX_FILE_BYTES + 1)
        if not name.endswith((".bpmn", ".dmn")) or len(name) > 200 or svc.has_control(name):
            problems.append(_("%(name)s: only .bpmn and .dmn files can be deployed.", name=name))
        elif len(data) > MAX_FILE_BYTES:
            problems.append(_("%(name)s: the file is too large.", name=name))
        elif not _utf8(data):
            problems.append(_("%(name)s: not UTF-8 text.", name=name))
        else:
            files[name] = data
    if problems:
        raise ValidationFailed(" ".join(problems), field_errors={"files": problems})
    return files


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def deploy_bundle(files, note: str) -> list:
    """Deploy (the caller commits); InvalidDefinition/ValidationFailed/Conflict for the page to show."""
    if len(note) > 500 or svc.has_control(note):
        raise field_error("note", _("At most 500 characters, no control characters."))
    ctx = ui_ctx()
    try:
        return deploy(g.db, files, at=ctx.clock.now(), actor=ctx.actor, note=note)
    except IntegrityError:
        g.db.rollback()
        raise Conflict(_("Another deployment of the same process happened at the same moment; try again.")) \
            from None


def _deployed_message(results) -> tuple[str, str | None]:
    created = [r for r in results if r.created]
    if not created:
        return _("Nothing new: the latest version is already this bundle."), None
    text = "; ".join(_("%(process)s version %(version)s", process=r.process_id, version=r.version) for r in created)
    first = created[0]
    diff = url_for(".diff", process=first.process_id, a=first.version - 1, b=first.version) \
        if first.version > 1 else None
    return _("Deployed: %(what)s.", what=text), diff


@bp.route("/versions", methods=["GET", "POST"])
def versions():
    groups = _versions()
    default = "call_dispatch" if "call_dispatch" in groups else "-"
    errors, values = {}, {"complete": request.form.get("complete", default), "note": ""}
    if request.method == "POST":
        values["note"] = request.form.get("note", "").strip()
        try:
            files = _read_uploads()
            base = values["complete"]
            if base and base != "-":
                files = dd.complete_bundle(get_definition(g.db, base).files or {}, files)
            results = deploy_bundle(files, values["note"])
            g.db.commit()
        except EngineError as exc:
            errors = _failed(exc, "files")
            errors.setdefault("files", []).extend(errors.pop("_form", []))
        else:
            message, diff = _deployed_message(results)
            flash(message, "info")
            return redirect(diff or url_for(".versions"))
        groups = _versions()
    contents = {d.id: dd.bundle_contents(d.files or {}) for rows in groups.values() for d in rows}
    choices = [("-", _("None: the upload is the whole bundle"))] + [
        (pid, _("From %(process)s version %(version)s", process=pid, version=rows[-1].version))
        for pid, rows in groups.items()]
    return render_template("admin/versions.html", groups=groups, contents=contents, errors=errors,
                           values=values, complete_choices=choices), (422 if errors else 200)


@bp.route("/versions/diff")
def diff():
    process_id = request.args.get("process", "call_dispatch")[:100]
    rows = list_definitions(g.db, process_id)
    if not rows:
        abort(404)
    numbers = [d.version for d in rows]
    b = request.args.get("b", type=int) or numbers[-1]
    a = request.args.get("a", type=int) or (b - 1 if b - 1 in numbers else numbers[0])
    if a not in numbers or b not in numbers:
        abort(404)
    old, new = get_definition(g.db, process_id, a), get_definition(g.db, process_id, b)
    try:
        result = dd.diff_bundles(old.files or {}, new.files or {})
    except dd.UnreadableXml as exc:
        flash(str(exc), "error")
        return redirect(url_for(".versions"))
    diagrams = sorted(n for n in set(old.files or {}) & set(new.files or {}) if n.endswith(".bpmn"))
    marks = {"old": result.diagram_marks("old"), "new": result.diagram_marks("new")}
    return render_template("admin/diff.html", process_id=process_id, numbers=numbers, a=a, b=b, old=old,
                           new=new, result=result, diagrams=diagrams, marks=marks)


# ---- routing table (dmn-js) -------------------------------------------------------------------------
def _routing_source(process_id: str, name: str | None):
    row = latest_definition(g.db, process_id)
    if row is None:
        abort(404)
    tables = sorted(n for n in (row.files or {}) if n.endswith(".dmn"))
    if not tables:
        abort(404)
    name = name if name in tables else tables[0]
    return row, tables, name


@bp.route("/routing", methods=["GET", "POST"])
def routing():
    process_id = request.values.get("process", "call_dispatch")[:100]
    row, tables, name = _routing_source(process_id, request.values.get("file"))
    if request.method == "POST":
        return _save_routing(row, name)
    try:
        readable = dd.decision_tables(name, row.files[name])
    except dd.UnreadableXml:
        readable = []
    processes = sorted({d.process_id for d in list_definitions(g.db)})
    return render_template("admin/routing.html", row=row, tables=tables, name=name, readable=readable,
                           processes=processes)


def _save_routing(row, name: str):
    """The edited table (from the editor, or an uploaded .dmn) with the rest of the version: a new version."""
    wants_json = request.accept_mimetypes.best == "application/json"
    base = request.form.get("base_version", type=int)
    note = request.form.get("note", "").strip() or _("Routing table edited in the browser")
    upload = request.files.get("dmn_file")
    data = upload.read(MAX_FILE_BYTES + 1) if upload and upload.filename else \
        request.form.get("dmn", "").encode("utf-8")
    try:
        if base is not None and base != row.version:
            raise Conflict(_("Version %(v)s was deployed meanwhile: reload the page and edit the latest table.",
                             v=row.version))
        if not data.strip():
            raise ValidationFailed(_("The routing table is empty."))
        if len(data) > MAX_FILE_BYTES or not _utf8(data):
            raise ValidationFailed(_("%(name)s: not UTF-8 text.", name=name) if len(data) <= MAX_FILE_BYTES
                                   else _("%(name)s: the file is too large.", name=name))
        files = {**(row.files or {}), name: data}
        results = deploy_bundle(files, note)
        g.db.commit()
    except EngineError as exc:
        g.db.rollback()
        if wants_json:
            return jsonify(ok=False, message=error_text(exc)), 409 if isinstance(exc, Conflict) else 422
        flash(error_text(exc), "error")
        return redirect(url_for(".routing", process=row.process_id, file=name))
    message, diff_url = _deployed_message(results)
    mine = next((r for r in results if r.process_id == row.process_id), results[0])
    if wants_json:
        return jsonify(ok=True, created=mine.created, version=mine.version, message=message, diff=diff_url)
    flash(message, "info")
    return redirect(diff_url or url_for(".routing", process=row.process_id, file=name))


# ---- SLA policy -------------------------------------------------------------------------------------
def policy_rows(policy: dict) -> list[dict]:
    """The rules as table rows, by stage in process order, then from general to specific."""
    rows = []
    for i, rule in enumerate(policy.get("rules", [])):
        match = rule.get("match", {})
        (kind, amount), = rule["target"].items()
        rows.append({"stage": match.get("stage", ""), "category": match.get("category"),
                     "sla_class": match.get("sla_class"), "urgency": match.get("urgency"),
                     "target": target_text(kind, amount),
                     "warn_ratio": rule.get("warn_ratio", policy.get("warn_ratio", 0.8)),
                     "overdue": rule.get("overdue_working_days", policy.get("overdue_working_days", 5)),
                     "note": rule.get("note", ""), "order": i, "specific": len(match)})
    order = {s: i for i, s in enumerate(STAGE_ORDER)}
    return sorted(rows, key=lambda r: (order.get(r["stage"], 99), r["stage"], r["specific"], r["order"]))


def target_text(kind: str, amount: float) -> str:
    n = int(amount) if amount == int(amount) else amount
    if kind == "working_days":
        return _("%(n)s working days", n=n)
    if kind == "working_hours":
        return _("%(n)s working hours", n=n)
    return _("%(n)s hours (round the clock)", n=n)


def schema_messages(messages, path: str = "") -> list[str]:
    """Marshmallow's nested messages as lines: ``rules[0].target: give exactly one of ...``."""
    if isinstance(messages, dict):
        return [line for key, value in messages.items()
                for line in schema_messages(value, f"{path}[{key}]" if isinstance(key, int) else
                                            f"{path}.{key}" if path else str(key))]
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [f"{path}: {' '.join(messages)}" if path else " ".join(messages)]
    return [line for m in messages for line in schema_messages(m, path)] if isinstance(messages, list) \
        else [f"{path}: {messages}"]


def policy_json(policy: dict) -> str:
    """The document to edit: one rule per line, Chinese kept readable."""
    rules = ",\n".join("    " + json.dumps(r, ensure_ascii=False) for r in policy.get("rules", []))
    head = {k: v for k, v in policy.items() if k != "rules"}
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    return "{\n" + "\n".join(lines) + ('\n' if lines else '') + '  "rules": [\n' + rules + "\n  ]\n}"


@bp.route("/sla", methods=["GET", "POST"])
@bp.route("/sla/<int(max=2147483647):version>", methods=["GET"])
def sla(version=None):
    all_versions = list(g.db.scalars(select(SlaPolicy).order_by(SlaPolicy.version.desc())))
    latest = all_versions[0] if all_versions else None
    shown = latest if version is None else next((p for p in all_versions if p.version == version), None)
    if version is not None and shown is None:
        abort(404)
    errors, document, note = {}, policy_json(latest.rules) if latest else "", ""
    if request.method == "POST":
        document, note = request.form.get("policy", ""), request.form.get("note", "").strip()
        try:
            try:
                parsed = json.loads(document)
            except ValueError as exc:
                raise ValidationFailed(_("Not valid JSON: %(error)s", error=str(exc))) from None
            if len(note) > 500 or svc.has_control(note):
                raise field_error("note", _("At most 500 characters, no control characters."))
            if not isinstance(parsed, dict):
                raise field_error("policy", _("The policy is a JSON object with the key \"rules\"."))
            try:
                PolicySchema().load(parsed)
            except ValidationError as exc:
                lines = schema_messages(exc.messages)
                raise ValidationFailed("; ".join(lines), field_errors={"policy": lines}) from None
            ctx = ui_ctx()
            row = deploy_policy(g.db, parsed,
                                at=ctx.clock.now(), actor=ctx.actor, note=note)
            g.db.commit()
        except EngineError as exc:
            errors = _failed(exc, "policy")
            errors.setdefault("policy", []).extend(errors.pop("_form", []))
        except IntegrityError:
            g.db.rollback()
            errors = {"policy": [_("Another SLA policy was deployed at the same moment; try again.")]}
        else:
            created = latest is None or row.version != latest.version
            flash(_("SLA policy version %(v)s deployed: new deadlines use it; running ones keep theirs.",
                    v=row.version) if created else _("Nothing new: the latest version is already this policy."),
                  "info")
            return redirect(url_for(".sla"))
    return render_template("admin/sla.html", versions=all_versions, latest=latest, shown=shown,
                           rows=policy_rows(shown.rules) if shown else [], document=document, note=note,
                           errors=errors, sla_classes=SLA_CLASSES), (422 if errors else 200)


# ---- calendar ---------------------------------------------------------------------------------------
def _recompute(day: date, workday: bool | None, note: str = "") -> tuple[int, int]:
    """Set or remove an override, recompute every open deadline; (recomputed, moved)."""
    ctx = ui_ctx()

    def deadlines():
        return {row[0]: tuple(row[1:]) for row in g.db.execute(select(
            SlaClock.id, SlaClock.warn_at, SlaClock.due_at, SlaClock.overdue_at).where(SlaClock.state.in_(OPEN)))}

    before = deadlines()
    set_override(g.db, day, workday, actor=ctx.actor, at=ctx.clock.now(), note=note)
    n = ctx.sla.recompute_open(g.db)
    return n, sum(1 for k, v in deadlines().items() if before.get(k) != v)


def _recomputed_message(day: date, n: int, moved: int) -> str:
    return _("%(day)s saved. %(n)s open deadlines recomputed, %(moved)s of them moved.",
             day=day.isoformat(), n=n, moved=moved)


@bp.route("/calendar", methods=["GET", "POST"])
def calendar():
    errors, values = {}, {"day": "", "workday": "holiday", "note": ""}
    if request.method == "POST":
        values = {k: request.form.get(k, "").strip() for k in values}
        try:
            day = svc.parse_day(values["day"])
            if values["workday"] not in ("workday", "holiday"):
                raise field_error("workday", _("Choose workday or holiday."))
            if len(values["note"]) > 200 or svc.has_control(values["note"]):
                raise field_error("note", _("At most 200 characters, no control characters."))
            n, moved = _recompute(day, values["workday"] == "workday", values["note"])
            g.db.commit()
        except EngineError as exc:
            errors = _failed(exc, "day")
        except IntegrityError:
            g.db.rollback()
            errors = {"day": [_("This day was changed at the same moment by someone else; try again.")]}
        else:
            flash(_recomputed_message(day, n, moved), "info")
            return redirect(url_for(".calendar"))
    keeper = services().sla
    office = keeper.calendars.get(g.db, fresh=True).office_hours
    overrides = g.db.scalars(select(CalendarOverride).order_by(CalendarOverride.day)).all()
    assumed = g.db.scalars(select(SlaClock).where(SlaClock.state.in_(OPEN), SlaClock.assumed_calendar.is_(True))
                           .order_by(SlaClock.due_at).limit(20)).all()
    return render_template("admin/calendar.html", outlook=calendar_outlook(), overrides=overrides,
                           file_overrides=sorted(keeper.calendars.file_overrides.items()), assumed=assumed,
                           office=[f"{s:%H:%M}–{e:%H:%M}" for s, e in office], errors=errors, values=values), \
        (422 if errors else 200)


@bp.route("/calendar/<string(maxlength=10):day>/remove", methods=["POST"])
def remove_override(day):
    d = svc.parse_day(day)
    if g.db.get(CalendarOverride, d) is None:
        abort(404)
    n, moved = _recompute(d, None)
    g.db.commit()
    flash(_recomputed_message(d, n, moved), "info")
    return redirect(url_for(".calendar"))
