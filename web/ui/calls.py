"""Calls in the web UI: filing (a grid worker's phone form), my calls, search, and a call's page with its
live BPMN diagram.

Pages render from the service layer as ``web/api/calls.py`` does and post plain forms (POST-redirect-GET);
``static/calls.js`` adds the diagram (bpmn-js), the phone's location and photo previews.  The call page's
"now" and timeline parts are fragments that ``app.js`` reloads in place (``data-refresh``).
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import secrets

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from engine.errors import Conflict, Forbidden, NotFound, ValidationFailed
from workflows.attachments import AttachmentStore
from workflows.calls import call_diagram, file_call_once, replay_filing, show_call
from workflows.models import ROLES, Attachment, Call
from workflows.org import FILING_ROLES, may_act_on
from workflows.queries import MY_CALLS_TABS, my_calls, possible_duplicates, search_calls

from . import calls_view as view
from .core import login_required, register_nav, services, ui_ctx, ui_user

bp = Blueprint("ui_calls", __name__, url_prefix="/calls", template_folder="templates")

# A grid worker and the hotline start on the filing form; community and street staff start on their queues.
register_nav("ui_calls.new", _l("File a call"), {"grid_worker", "hotline"}, order=10)
register_nav("ui_calls.new", _l("File a call"), {"community_staff", "street_dispatcher"}, order=40)
register_nav("ui_calls.mine", _l("My calls"), FILING_ROLES, order=20)
register_nav("ui_calls.search", _l("Search calls"), set(ROLES), order=60)

KEY_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
FINISHED = ("closed", "voided", "merged")
# who sees "maybe the same problem" on an open call: those who file, triage or coordinate
DUPLICATE_ROLES = {"grid_worker", "community_staff", "street_dispatcher", "district_dispatcher", "hotline"}


def _work_href(item) -> str | None:
    """The work item's page (the work feature's) when this user may act on it, else None."""
    user = ui_user()
    if "ui_work.item" not in current_app.view_functions or user is None \
            or not may_act_on(user, item.lane, item.owner_unit):
        return None
    return url_for("ui_work.item", item_id=item.id)


@bp.context_processor
def _labels():
    return {"clock_state": view.clock_state, "clock_outcome": view.clock_outcome, "work_href": _work_href}


def _filing_limit():
    from web.api.security import limiter

    return limiter


def _max_bytes() -> int:
    return int(services().settings.max_upload_mb * 1024 * 1024)


# ---- filing ---------------------------------------------------------------------------------------

def _render_form(values: dict, errors: dict[str, str], key: str, status: int = 200, form_error: str | None = None):
    user = ui_user()
    return render_template("calls/new.html", values=values, errors=errors, form_error=form_error, key=key,
                           categories=view.categories(), scope=view.scope_of(user),
                           community_user=user.unit.kind == "community", max_mb=f"{_max_bytes() / 1048576:g}",
                           max_files=view.MAX_FILES), status


def _request_hash(data: dict, uploads) -> str:
    body = {**data, "photos": [hashlib.sha256(u.data).hexdigest() for u in uploads]}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


@bp.route("/new", methods=["GET", "POST"])
@login_required(*sorted(FILING_ROLES))
def new():
    """The filing form: category, description, place (typed, and the phone's position), urgency, photos."""
    if request.method == "GET":
        return _render_form({"urgency": "normal"}, {}, secrets.token_urlsafe(18))
    _check_filing_rate()
    user = ui_user()
    form = request.form
    key = form.get("filing_key", "")
    if not KEY_RE.match(key):
        key = secrets.token_urlsafe(18)
    scope = view.scope_of(user)
    data, errors = view.check_filing(form, user, scope, {c.code for c in view.categories()})
    uploads, photo_error = view.check_photos(request.files.getlist("photos"), _max_bytes())
    if photo_error:
        errors["photos"] = photo_error
    if errors:
        return _render_form(form, errors, key, 422)
    c = ui_ctx()
    digest = _request_hash(data, uploads)
    try:
        store = AttachmentStore(services().settings.attachment_dir, _max_bytes())
        rows = store.save(g.db, uploads, purpose="photo", actor=c.actor, at=c.clock.now()) if uploads else []
        body = {**data, "photos": [url_for("attachments.attachment_file", attachment_id=a.id) for a in rows]}
        filing = file_call_once(c, body, key=key, request_hash=digest)
        number = filing.call.number
        if filing.replayed:  # sent twice (a double tap, a retry): the first filing stands
            g.db.rollback()
        else:
            for a in rows:
                a.call_id = filing.call.id
            g.db.commit()
    except IntegrityError:  # a twin request with the same key committed first
        g.db.rollback()
        filing = replay_filing(ui_ctx(), key, digest)
        if filing is None:
            raise
        number = filing.call.number
    except ValidationFailed as exc:
        g.db.rollback()
        return _render_form(form, view.service_errors(exc.field_errors), key, 422,
                            None if exc.field_errors else _("The call could not be filed: check the form."))
    except Forbidden:
        g.db.rollback()
        return _render_form(form, {"community": str(view.FIELD_HELP["community"])}, key, 403)
    except Conflict:  # this form was already used for a different call (Back, edit, send)
        g.db.rollback()
        return _render_form(form, {}, secrets.token_urlsafe(18), 409,
                            _("This form was already sent for another call. Check it and send it again "
                              "to file a new call."))
    if filing.replayed:
        flash(_("Call %(number)s was already filed from this form.", number=number), "info")
    else:
        flash(_("Call %(number)s filed.", number=number), "info")
    return redirect(url_for("ui_calls.show", number=number))


def _check_filing_rate() -> None:
    """The API's per-user filing limit applies to the form too."""
    limiter = _filing_limit()
    if not limiter.enabled:
        return
    from limits import parse_many

    user = ui_user()
    for item in parse_many(current_app.config["HUYING_RATELIMIT_FILING"]):
        if not limiter.limiter.hit(item, "ui-filing", f"user:{user.id}"):
            abort(429, description=_("Too many calls filed in a short time. Wait a minute and try again."))


# ---- my calls -------------------------------------------------------------------------------------

@bp.route("/mine")
@login_required(*sorted(FILING_ROLES))
def mine():
    """The calls I filed: open ones first by default, with their status and whether they are overdue."""
    show = request.args.get("show", "open")
    if show not in MY_CALLS_TABS:
        show = "open"
    page = view.page_number(request.args.get("page"))
    mine_ = my_calls(ui_ctx(), show, limit=view.PER_PAGE, offset=(page - 1) * view.PER_PAGE)
    tabs = mine_.tabs
    pages = max(1, math.ceil(tabs[show] / view.PER_PAGE))
    return render_template("calls/mine.html", rows=mine_.rows, show=show, tabs=tabs,
                           page=page, pages=pages)


# ---- search ---------------------------------------------------------------------------------------

@bp.route("")
@login_required()
def search():
    """Every call I may see, filtered by text, status, level, category, place, department, dates, overdue."""
    user = ui_user()
    f, errors = view.parse_search(request.args, user)
    total, rows = (0, []) if errors else search_calls(ui_ctx(), f)
    args = {k: v for k, v in request.args.items() if k != "page" and v}
    return render_template("calls/search.html", f=f, errors=errors, total=total, rows=rows, args=args,
                           values=request.args, page=f.page, pages=max(1, math.ceil(total / f.per_page)),
                           categories=view.categories(), scope=view.scope_of(user),
                           show_filter=view.searchable_filters(user), sorts=view.SORT_CHOICES,
                           searched=bool(args)), (422 if errors else 200)


# ---- one call -------------------------------------------------------------------------------------

def _call_view(number: str):
    try:
        return show_call(ui_ctx(), number)
    except NotFound:
        abort(404)
    except Forbidden:
        abort(403)


def _trace(call: Call):
    """Where the process stands: the diagram's markers and their names (for the text alternative)."""
    root_number = call.parent.number if call.parent_id else call.number
    try:
        d = call_diagram(ui_ctx(), root_number)
    except (NotFound, Forbidden):
        return None
    names = view.element_names(d.process_id, d.version, d.xml)
    return {"completed": d.completed, "active": d.active, "version": d.version,
            "active_labels": [view.element_label(e, names) for e in d.active if e in names],
            "done_count": len(d.completed)}


def _now_context(number: str) -> dict:
    cv = _call_view(number)
    return {"cv": cv, "call": cv.call, "trace": _trace(cv.call)}


@bp.route("/<string:number>")
@login_required()
def show(number):
    """One call: details and photos, where it is now (work items, deadlines, the live diagram), its timeline."""
    ctx = _now_context(number)
    call = ctx["call"]
    root = call.parent if call.parent_id else call
    photos = list(g.db.scalars(select(Attachment).where(Attachment.call_id == root.id).order_by(Attachment.id)))
    duplicates = []
    if call.closed_at is None and call.parent_id is None and ui_user().role in DUPLICATE_ROLES:
        duplicates = possible_duplicates(ui_ctx(), call)
    return render_template("calls/show.html", **ctx, root=root, photos=photos, duplicates=duplicates,
                           timeline=view.timeline(ctx["cv"].timeline), duplicate_reason=view.duplicate_reason)


def _fragment_user():
    """Fragments answer 401 (not the sign-in page) when the session has ended, so nothing is swapped in."""
    if ui_user() is None:
        abort(401)


@bp.route("/<string:number>/now")
def now_fragment(number):
    _fragment_user()
    return render_template("calls/_now.html", **_now_context(number))


@bp.route("/<string:number>/timeline")
def timeline_fragment(number):
    _fragment_user()
    cv = _call_view(number)
    return render_template("calls/_timeline.html", call=cv.call, timeline=view.timeline(cv.timeline))
