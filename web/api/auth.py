"""Sign-in: bearer tokens for API clients, a cookie session for the browser."""
from __future__ import annotations

import secrets
from datetime import timedelta

from flask import g, request, session
from flask_smorest import Blueprint, abort
from marshmallow import Schema, fields, validate

from workflows.auth import revoke_token, sign_in

from .present import user_out
from .schemas import UserSchema
from .security import (
    current_user,
    identify,
    limiter,
    public,
    request_clock,
    services,
    signin_failed,
    signin_ip_key,
    signin_ip_limit,
    signin_key,
    signin_limit,
)

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Sign in and out")


class SignInSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=200))
    client = fields.String(load_default="", validate=validate.Length(max=200),
                           metadata={"description": "a name for this client, shown in the token list"})


class TokenSchema(Schema):
    token = fields.String(metadata={"description": "send as 'Authorization: Bearer <token>'; shown once"})
    token_type = fields.String(metadata={"example": "Bearer"})
    expires_at = fields.DateTime()
    user = fields.Nested(UserSchema)


class SessionSchema(Schema):
    csrf_token = fields.String(metadata={"description": "send as X-CSRF-Token with every POST/PUT/PATCH/DELETE"})
    expires_at = fields.DateTime()
    user = fields.Nested(UserSchema)


class MeSchema(Schema):
    user = fields.Nested(UserSchema)
    via = fields.String(validate=validate.OneOf(("bearer", "session")))
    expires_at = fields.DateTime()


def _sign_in(body: dict, kind: str):
    svc = services()
    ttl = timedelta(hours=svc.settings.token_ttl_hours)
    issued = sign_in(g.db, body["username"], body["password"], now=request_clock().now(), ttl=ttl, kind=kind,
                     client=body.get("client") or request.headers.get("User-Agent", ""))
    if issued is None:
        abort(401, message="wrong username or password, or the account is disabled")
    g.db.commit()
    return issued


@blp.route("/tokens", methods=["POST"])
@limiter.shared_limit(signin_limit, "signin", key_func=signin_key)
@limiter.shared_limit(signin_ip_limit, "signin-ip", key_func=signin_ip_key, deduct_when=signin_failed)
@blp.arguments(SignInSchema)
@blp.response(201, TokenSchema)
@blp.doc(security=[])
@public
def create_token(body):
    """Sign in with username and password; get a bearer token (expires, revocable)"""
    issued = _sign_in(body, "api")
    return {"token": issued.token, "token_type": "Bearer", "expires_at": issued.row.expires_at,
            "user": user_out(issued.row.user)}


@blp.route("/tokens/current", methods=["DELETE"])
@blp.response(204)
def revoke_current():
    """Sign out: revoke the token (or browser session) this request was made with"""
    current_user()
    identity = identify()
    revoke_token(g.db, identity.token, now=request_clock().now(), actor=identity.user.username)
    g.db.commit()
    if identity.via == "session":
        session.clear()


@blp.route("/session", methods=["POST"])
@limiter.shared_limit(signin_limit, "signin", key_func=signin_key)
@limiter.shared_limit(signin_ip_limit, "signin-ip", key_func=signin_ip_key, deduct_when=signin_failed)
@blp.arguments(SignInSchema)
@blp.response(200, SessionSchema)
@blp.doc(security=[])
@public
def create_session(body):
    """Sign in the browser: sets the session cookie and returns its CSRF token"""
    issued = _sign_in(body, "session")
    session.clear()
    session["token"] = issued.token
    session["csrf"] = secrets.token_urlsafe(24)
    session.permanent = True
    return {"csrf_token": session["csrf"], "expires_at": issued.row.expires_at, "user": user_out(issued.row.user)}


@blp.route("/session", methods=["DELETE"])
@blp.response(204)
@blp.doc(security=[])
@public
def delete_session():
    """Sign the browser out (revokes its session token)"""
    identity = identify()
    if identity is not None:
        revoke_token(g.db, identity.token, now=request_clock().now(), actor=identity.user.username)
        g.db.commit()
    session.clear()


@blp.route("/me", methods=["GET"])
@blp.response(200, MeSchema)
def me():
    """Who am I signed in as"""
    user = current_user()
    identity = identify()
    return {"user": user_out(user), "via": identity.via, "expires_at": identity.token.expires_at}
