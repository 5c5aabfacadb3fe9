"""Who is asking: bearer tokens for API clients, the session cookie for the browser; rate limits.

* ``Authorization: Bearer <token>`` (from ``POST /api/v1/auth/tokens``);
* or the browser session cookie (from ``POST /api/v1/auth/session``), which
  holds a session token; state-changing requests made with the cookie must
  send the session's CSRF token in ``X-CSRF-Token``.

Every endpoint then checks the role (here) and the org scope (in the service
layer, which knows what a unit may see).
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from functools import wraps

from flask import current_app, g, request, session
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_smorest import abort

from engine.clock import MemoClock
from workflows.auth import token_user
from workflows.context import ServiceContext
from workflows.models import ApiToken, User

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)


@dataclass
class Identity:
    user: User
    token: ApiToken
    via: str  # bearer, session


def services():
    return current_app.extensions["huying"]


def request_clock() -> MemoClock:
    """The time of this request, read once."""
    if "clock" not in g:
        g.clock = MemoClock(services().clock)
    return g.clock


def identify() -> Identity | None:
    """The signed-in user of this request (cached on ``g``), or None."""
    if "identity" in g:
        return g.identity
    identity = None
    now = request_clock().now()
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            abort(401, message="use 'Authorization: Bearer <token>' (get one from POST /api/v1/auth/tokens)")
        found = token_user(g.db, secret.strip(), now=now)
        if found is None:
            abort(401, message="the token is unknown, expired or revoked; sign in again")
        identity = Identity(found[0], found[1], "bearer")
    elif session.get("token"):
        found = token_user(g.db, session["token"], now=now)
        if found is None or found[1].kind != "session":
            session.clear()
        else:
            identity = Identity(found[0], found[1], "session")
            if request.method in UNSAFE:
                sent = request.headers.get("X-CSRF-Token", "")
                if not hmac.compare_digest(sent, session.get("csrf", "")):
                    abort(403, message="missing or wrong X-CSRF-Token for a signed-in browser session")
    g.identity = identity
    return identity


def current_user() -> User:
    identity = identify()
    if identity is None:
        abort(401, message="sign in first: POST /api/v1/auth/tokens, then send 'Authorization: Bearer <token>'")
    return identity.user


def _check_roles(roles) -> User:
    user = current_user()
    if roles and user.role not in roles:
        abort(403, message=f"{user.username} ({user.role}) may not do this; it needs one of: {', '.join(roles)}")
    return user


def require(*roles: str):
    """The view needs a signed-in user, with one of ``roles`` if given (403 otherwise).

    The roles are also recorded on the view, so :func:`gate` checks them before
    the request body is even parsed (an outsider learns nothing from a 422).
    """
    def decorator(fn):
        @wraps(fn)
        def wrapper(*args, **kwargs):
            _check_roles(roles)
            return fn(*args, **kwargs)
        wrapper._huying_roles = roles
        return wrapper
    return decorator


def public(fn):
    """The view needs no sign-in (health, sign-in itself)."""
    fn._huying_public = True
    return fn


def gate() -> None:
    """Before every /api/v1 request: sign-in (401) and role (403) come first, input validation after."""
    if not request.path.startswith("/api/v1/") or request.endpoint is None:
        return
    if request.endpoint.startswith("api-docs.") or request.endpoint == "swagger_assets":
        return
    view = current_app.view_functions.get(request.endpoint)
    if view is None or getattr(view, "_huying_public", False):
        return
    _check_roles(getattr(view, "_huying_roles", ()))


def ctx() -> ServiceContext:
    """The service context of this request: its session, the clock, the signed-in user."""
    svc = services()
    return ServiceContext(g.db, request_clock(), current_user(), sla=svc.sla)


def user_key() -> str:
    identity = identify()
    return f"user:{identity.user.id}" if identity is not None else f"ip:{get_remote_address()}"


def signin_key() -> str:
    """Attempts on one account from one address: the API's JSON sign-ins and the sign-in page's form alike."""
    body = request.get_json(silent=True) if request.is_json else None
    name = body.get("username") if isinstance(body, dict) else request.form.get("username", "")
    name = name.strip() if isinstance(name, str) else ""
    return f"signin:{get_remote_address()}:{name[:64]}"


def signin_limit() -> str:
    return current_app.config["HUYING_RATELIMIT_SIGNIN"]


def signin_ip_key() -> str:
    """Failed sign-ins from one address, whatever the username (one address trying many accounts)."""
    return f"signin-ip:{get_remote_address()}"


def signin_ip_limit() -> str:
    return current_app.config["HUYING_RATELIMIT_SIGNIN_IP"]


def signin_failed(response) -> bool:
    """Only failed attempts count against the address: a street office behind one NAT signs in all day."""
    return response.status_code == 401


def filing_limit() -> str:
    return current_app.config["HUYING_RATELIMIT_FILING"]


def reject_nul() -> None:
    """Text with NUL characters is refused at the edge (PostgreSQL cannot store them): 404 in a path,
    422 in a query parameter, form field or JSON body."""
    if not request.path.startswith("/api/v1/"):
        return
    if "\x00" in request.path:
        abort(404, message="no such resource")
    bad = sorted({k for k, v in request.args.items(multi=True) if "\x00" in k or "\x00" in v})
    if request.mimetype == "multipart/form-data" or request.mimetype == "application/x-www-form-urlencoded":
        bad += sorted({k for k, v in request.form.items(multi=True) if "\x00" in k or "\x00" in v})
    elif request.is_json:
        raw = request.get_data(cache=True)
        if b"\\u0000" in raw or b"\x00" in raw:
            bad.append("_schema")
    if bad:
        abort(422, message="text must not contain NUL characters",
              errors={name: ["must not contain NUL characters"] for name in bad})
