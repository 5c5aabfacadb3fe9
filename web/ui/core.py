"""The UI's frame: sign-in and out, the signed-in user, CSRF on forms, navigation, the home page."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from engine.clock import MemoClock
from workflows.auth import revoke_token, sign_in, token_user
from workflows.context import ServiceContext
from workflows.models import User
from workflows.queries import my_counts

from .i18n import HTML_LANG, LANGUAGES

bp = Blueprint("ui", __name__, template_folder="templates", static_folder="static", static_url_path="/ui/static")

ROLE_NAMES = {
    "grid_worker": _l("Grid worker"), "community_staff": _l("Community staff"),
    "street_dispatcher": _l("Street dispatcher"), "department_staff": _l("Department staff"),
    "district_dispatcher": _l("District dispatcher"), "supervisor": _l("Supervisor"), "admin": _l("Administrator"),
    "hotline": _l("Hotline operator"),
}


@dataclass
class NavItem:
    endpoint: str
    label: object  # a lazy string
    roles: frozenset[str]
    order: int


NAV: list[NavItem] = []


def register_nav(endpoint: str, label, roles, order: int = 50) -> None:
    """A feature's entry in the top navigation, shown to ``roles``."""
    NAV.append(NavItem(endpoint, label, frozenset(roles), order))


def services():
    return current_app.extensions["huying"]


def refresh_seconds() -> float:
    """How often live parts of a page reload (HUYING_UI_REFRESH_SECONDS)."""
    return services().settings.ui_refresh_seconds


def ui_clock() -> MemoClock:
    if "clock" not in g:
        g.clock = MemoClock(services().clock)
    return g.clock


def ui_user() -> User | None:
    """The user of the browser session, or None."""
    if "ui_user" not in g:
        user = None
        secret = session.get("token")
        if secret:
            found = token_user(g.db, secret, now=ui_clock().now())
            if found is not None and found[1].kind == "session":
                user = found[0]
            else:
                session.clear()
        g.ui_user = user
    return g.ui_user


def login_required(*roles: str):
    """A page for signed-in users (of ``roles``, if given); others go to the sign-in page or get 403."""
    def decorator(fn):
        @wraps(fn)
        def wrapper(*args, **kwargs):
            user = ui_user()
            if user is None:
                return redirect(url_for("ui.login", next=request.full_path.rstrip("?")))
            if roles and user.role not in roles:
                abort(403)
            return fn(*args, **kwargs)
        return wrapper
    return decorator


def ui_ctx() -> ServiceContext:
    svc = services()
    return ServiceContext(g.db, ui_clock(), ui_user(), sla=svc.sla)


def check_csrf() -> None:
    """Every state-changing form carries the session's token (a hidden ``csrf_token`` field)."""
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
    if not sent or not secrets.compare_digest(sent, session.get("csrf", "")):
        abort(400, description=_("This form has expired. Reload the page and try again."))


@bp.before_app_request
def _csrf_for_ui_forms():
    if request.method == "POST" and request.blueprint and request.blueprint.startswith("ui") \
            and request.endpoint != "ui.login":
        check_csrf()


@bp.app_context_processor
def _frame():
    user = ui_user() if "db" in g else None
    locale = get_locale()
    lang = "en" if locale is not None and locale.language == "en" else "zh_CN"
    nav = [n for n in sorted(NAV, key=lambda n: n.order) if user is not None and user.role in n.roles
           and n.endpoint in current_app.view_functions]
    return {"current_user": user, "lang": lang, "html_lang": HTML_LANG.get(lang, "zh-CN"), "languages": LANGUAGES,
            "nav": nav, "role_name": lambda role: ROLE_NAMES.get(role, role), "csrf_token": session.get("csrf", ""),
            "now": ui_clock().now() if "db" in g else None,
            "virtual_clock": getattr(services().clock, "virtual", False),
            "refresh_seconds": refresh_seconds()}


def _signin_limits(view):
    """The sign-in page counts against the same limits as the API's sign-ins (web.api.security): attempts per
    account and address, failed attempts per address."""
    from web.api.security import (
        limiter,
        signin_failed,
        signin_ip_key,
        signin_ip_limit,
        signin_key,
        signin_limit,
    )

    message = _l("Too many sign-in attempts. Wait a minute and try again.")
    view = limiter.shared_limit(signin_ip_limit, "signin-ip", key_func=signin_ip_key, deduct_when=signin_failed,
                                methods=["POST"], error_message=message)(view)
    return limiter.shared_limit(signin_limit, "signin", key_func=signin_key, methods=["POST"],
                                error_message=message)(view)


@bp.route("/login", methods=["GET", "POST"])
@_signin_limits
def login():
    error = None
    if request.method == "POST":
        svc = services()
        issued = sign_in(g.db, request.form.get("username", "").strip(), request.form.get("password", ""),
                         now=ui_clock().now(), ttl=timedelta(hours=svc.settings.token_ttl_hours), kind="session",
                         client=request.headers.get("User-Agent", "")[:200])
        if issued is None:
            error = _("Wrong username or password, or the account is disabled.")
        else:
            g.db.commit()
            lang = session.get("lang")
            session.clear()
            session.update(token=issued.token, csrf=secrets.token_urlsafe(24))
            if lang:
                session["lang"] = lang
            session.permanent = True
            target = request.args.get("next") or ""
            return redirect(target if target.startswith("/") and not target.startswith("//") else url_for("ui.home"))
    return render_template("login.html", error=error), (401 if error else 200)


@bp.route("/logout", methods=["POST"])
def logout():
    user = ui_user()
    if user is not None:
        found = token_user(g.db, session.get("token", ""), now=ui_clock().now())
        if found is not None:
            revoke_token(g.db, found[1], now=ui_clock().now(), actor=user.username)
            g.db.commit()
    session.clear()
    flash(_("You have signed out."), "info")
    return redirect(url_for("ui.login"))


@bp.route("/")
@login_required()
def home():
    """Where each role starts: its own first page if a feature provides one, else this summary."""
    user = ui_user()
    for item in sorted(NAV, key=lambda n: n.order):
        if user.role in item.roles and item.endpoint in current_app.view_functions and item.order < 20:
            return redirect(url_for(item.endpoint))
    open_items, filed = my_counts(ui_ctx())
    return render_template("home.html", open_items=open_items, my_calls=filed)
