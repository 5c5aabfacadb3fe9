"""Sign-in tokens and integrators' API keys.

A token is 32 random bytes (URL-safe text) given to the client once; the
database keeps only its SHA-256, so a leaked table grants nothing.  Tokens
expire (``HUYING_TOKEN_TTL_HOURS``) and can be revoked one by one or all at
once for a user.  API keys (Open311 ``api_key``) are the same idea without
expiry, issued by an admin and bound to the user they file calls as.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine.audit import record_audit
from engine.errors import Conflict, NotFound, ValidationFailed, msg

from .models import ApiKey, ApiToken, User
from .org import authenticate, get_user
from .principals import key_by_digest, token_by_digest

TOKEN_KINDS = ("api", "session")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class IssuedToken:
    token: str  # shown once
    row: ApiToken


def sign_in(session: Session, username: str, password: str, *, now: datetime, ttl: timedelta,
            kind: str = "api", client: str = "") -> IssuedToken | None:
    """A new token for a correct username and password, else None (same answer for every failure)."""
    user = authenticate(session, username, password)
    if user is None:
        return None
    secret = secrets.token_urlsafe(32)
    row = ApiToken(token_hash=_digest(secret), user=user, kind=kind, created_at=now, expires_at=now + ttl,
                   client=client[:200])
    session.add(row)
    record_audit(session, at=now, actor=user.username, action="auth.sign_in", subject=user.username,
                 new={"kind": kind, "expires_at": row.expires_at.isoformat()})
    session.flush()
    return IssuedToken(secret, row)


def token_user(session: Session, secret: str, *, now: datetime) -> tuple[User, ApiToken] | None:
    """The active user behind a live token, else None (unknown, expired, revoked, or user disabled)."""
    if not secret or len(secret) > 200:
        return None
    row = token_by_digest(session, _digest(secret))
    if row is None or row.revoked_at is not None or row.expires_at <= now or not row.user.active:
        return None
    return row.user, row


def revoke_token(session: Session, row: ApiToken, *, now: datetime, actor: str) -> None:
    if row.revoked_at is None:
        row.revoked_at = now
        record_audit(session, at=now, actor=actor, action="auth.revoke", subject=row.user.username,
                     new={"token": row.id})
        session.flush()


def revoke_all(session: Session, username: str, *, now: datetime, actor: str) -> int:
    """Revoke every live token of a user (e.g. a lost phone); returns how many."""
    user = get_user(session, username)
    count = session.execute(update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None),
                                                   ApiToken.expires_at > now).values(revoked_at=now)).rowcount
    record_audit(session, at=now, actor=actor, action="auth.revoke_all", subject=username, new={"revoked": count})
    session.flush()
    return count


# ---- API keys ----------------------------------------------------------------------------------

@dataclass
class IssuedKey:
    key: str  # shown once
    row: ApiKey


def create_api_key(session: Session, name: str, *, username: str | None, now: datetime, actor: str) -> IssuedKey:
    """Issue a key named ``name`` that files calls as ``username`` (default: the district's hotline user)."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ValidationFailed(msg("a key needs a name of 1-100 characters"),
                               field_errors={"name": [msg("%(low)s-%(high)s characters", low=1, high=100)]})
    if session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise Conflict(msg("an API key named '%(name)s' already exists", name=name))
    if username:
        user = get_user(session, username)
    else:
        user = session.scalar(select(User).where(User.role == "hotline", User.active.is_(True)).order_by(User.id))
        if user is None:
            raise NotFound(msg("no active hotline user to file calls as; name one with --user"))
    from .org import FILING_ROLES

    if user.role not in FILING_ROLES:
        raise ValidationFailed(msg("%(username)s (%(role)s) cannot file calls", username=user.username,
                                   role=user.role),
                               field_errors={"user": [msg("must be a user who may file calls")]})
    secret = "hy_" + secrets.token_urlsafe(30)
    row = ApiKey(name=name, key_hash=_digest(secret), prefix=secret[:10], user=user, created_at=now,
                 created_by=actor)
    session.add(row)
    record_audit(session, at=now, actor=actor, action="apikey.created", subject=name,
                 new={"user": user.username, "prefix": row.prefix})
    session.flush()
    return IssuedKey(secret, row)


def api_key_user(session: Session, secret: str) -> tuple[User, ApiKey] | None:
    if not secret or len(secret) > 200:
        return None
    row = key_by_digest(session, _digest(secret))
    if row is None or row.revoked_at is not None or not row.user.active:
        return None
    return row.user, row


def revoke_api_key(session: Session, key_id: int, *, now: datetime, actor: str) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(msg("no API key %(id)s", id=key_id))
    if row.revoked_at is None:
        row.revoked_at = now
        record_audit(session, at=now, actor=actor, action="apikey.revoked", subject=row.name)
        session.flush()
    return row


def list_api_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))
