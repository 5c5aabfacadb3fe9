"""Who acts: users and their org units, kept in memory from one request to the next.

Every request begins by loading the user behind it (by username, sign-in token or API key)
with the unit chain the permission rules read (unit, its street or district, the district).
As ORM objects that was a four-way join and four objects built on every request: about a
tenth of an action.  Users and units change seldom, and every change bumps the org revision
(one row, written in the changing transaction: :func:`workflows.models.bump_org_revision`).  So a request asks
the database for the live parts only, in one small statement: the user's id and ``active``
flag (or the token's row), and the current revision.  When this process holds a copy of the
user read at that revision, the copy becomes this session's objects without more SQL;
otherwise they are read as before and kept.

A copy is kept only if it was read from committed rows: never from a transaction that has
changed users or units itself (it might roll back), nor from an object changed in the session.
"""
from __future__ import annotations

import threading
import weakref

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state

from engine.db import DriverSelect, attach, loaded_columns

from .models import ORG_CHANGED, ApiKey, ApiToken, OrgRevision, OrgUnit, User

_MAX_DEPTH = 8  # units above a user that are kept with them (district -> street -> community is 3)
_REVISION = select(OrgRevision.revision).where(OrgRevision.id == 1).scalar_subquery()
_USER_COLUMNS, _UNIT_COLUMNS = loaded_columns(User), loaded_columns(OrgUnit)
_TOKEN_COLUMNS, _KEY_COLUMNS = loaded_columns(ApiToken), loaded_columns(ApiKey)

# Statements run on every request are built once: building one costs more than running it on SQLite.
_USER_PROBE = DriverSelect(select(User.id, User.active, _REVISION).where(User.username == bindparam("username")))
_TOKEN_PROBE = DriverSelect(select(*(getattr(ApiToken, k) for k in _TOKEN_COLUMNS), _REVISION)
                            .where(ApiToken.token_hash == bindparam("digest")))
_KEY_PROBE = DriverSelect(select(*(getattr(ApiKey, k) for k in _KEY_COLUMNS), _REVISION)
                          .where(ApiKey.key_hash == bindparam("digest")))
_USER_BY_ID = select(User).where(User.id == bindparam("id"))


class PrincipalCache:
    """Users with their unit chain, as column values, by user id, each with the org revision it was read at."""

    def __init__(self, size: int = 10_000):
        self.size = size
        self._items: dict[int, tuple[int, dict, list[dict]]] = {}
        self._lock = threading.Lock()

    def get(self, user_id: int, revision: int) -> tuple[dict, list[dict]] | None:
        entry = self._items.get(user_id)
        if entry is None or entry[0] != revision:
            return None
        return entry[1], entry[2]

    def put(self, user_id: int, revision: int, user: dict, units: list[dict]) -> None:
        with self._lock:
            self._items.pop(user_id, None)
            self._items[user_id] = (revision, user, units)
            while len(self._items) > self.size:
                del self._items[next(iter(self._items))]  # the oldest

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # engine -> its PrincipalCache
_CACHES_LOCK = threading.Lock()


def principal_cache(session: Session) -> PrincipalCache:
    """The cache of the session's database (an engine's: a revision means nothing in another database)."""
    engine = session.get_bind()
    cache = _CACHES.get(engine)
    if cache is None:
        with _CACHES_LOCK:
            cache = _CACHES.setdefault(engine, PrincipalCache())
    return cache


# ---- loading ----------------------------------------------------------------------------------------

def _attach_user(session: Session, user: dict, units: list[dict]) -> User:
    """The cached user and its unit chain (unit first) as this session's objects, without SQL."""
    parent = None
    for values in reversed(units):  # from the top down: each unit's ``parent`` is the one above it
        parent = attach(session, OrgUnit, values, parent=parent)
    return attach(session, User, user, unit=parent)


def _unit_chain(user: User) -> list[OrgUnit] | None:
    """The user's unit and every unit above it (read now if the ORM has not yet), or None if any was changed
    in this session.  The whole chain is kept, so that a cached user never needs a lazy load."""
    chain = []
    unit = user.unit
    while unit is not None and len(chain) < _MAX_DEPTH:
        state = instance_state(unit)
        if state.modified or state.key is None:
            return None
        chain.append(unit)
        unit = unit.parent
    return chain if unit is None else None


def _keep(session: Session, user: User, revision: int) -> None:
    if session.info.get(ORG_CHANGED):
        return
    state = instance_state(user)
    if state.modified or state.key is None:
        return
    chain = _unit_chain(user)
    if chain is None or any(k not in state.dict for k in _USER_COLUMNS):
        return
    units = []
    for unit in chain:
        values = instance_state(unit).dict
        if any(k not in values for k in _UNIT_COLUMNS):
            return
        units.append({k: values[k] for k in _UNIT_COLUMNS})
    principal_cache(session).put(user.id, revision, {k: state.dict[k] for k in _USER_COLUMNS}, units)


def user_by_id(session: Session, user_id: int, revision: int) -> User | None:
    """The user with this id and its unit chain, from the cache if it was read at ``revision``."""
    cached = principal_cache(session).get(user_id, revision)
    if cached is not None:
        return _attach_user(session, *cached)
    user = session.scalar(_USER_BY_ID, {"id": user_id})
    if user is not None:
        _keep(session, user, revision)
    return user


def user_by_name(session: Session, username: str) -> User | None:
    """The user with this username (active or not), or None."""
    row = _USER_PROBE.first(session, username=username)
    if row is None:
        return None
    return user_by_id(session, row[0], row[2] or 0)


def _row_with_user(session: Session, cls, columns: tuple[str, ...], probe, digest: str):
    row = probe.first(session, digest=digest)
    if row is None:
        return None
    values = dict(zip(columns, row[:-1], strict=True))
    user = user_by_id(session, values["user_id"], row[-1] or 0)
    if user is None:
        return None
    return attach(session, cls, values, user=user)


def token_by_digest(session: Session, digest: str) -> ApiToken | None:
    """The sign-in token with this hash (live or not) with its user, or None."""
    return _row_with_user(session, ApiToken, _TOKEN_COLUMNS, _TOKEN_PROBE, digest)


def key_by_digest(session: Session, digest: str) -> ApiKey | None:
    """The API key with this hash (live or not) with its user, or None."""
    return _row_with_user(session, ApiKey, _KEY_COLUMNS, _KEY_PROBE, digest)
