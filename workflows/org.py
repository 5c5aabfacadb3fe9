"""The org tree and users: lookups and the visibility rules of domain.md §1."""
from __future__ import annotations

from sqlalchemy import exists, false, or_, select, true
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.elements import False_, True_

from engine.errors import Forbidden, NotFound, ValidationFailed, msg
from engine.models import WorkItem

from .models import Call, Category, OrgUnit, User
from .principals import user_by_name

# Which roles may act on a work item of each BPMN lane; the item's owner unit
# (from the diagram's ``owner`` property) must also be the user's own unit.
LANE_ROLES = {
    "community": {"community_staff"},
    "street": {"street_dispatcher"},
    "department": {"department_staff"},
    "district": {"district_dispatcher"},
    "command": {"street_dispatcher", "district_dispatcher"},
    "verification": {"grid_worker", "community_staff", "street_dispatcher"},
}
FILING_ROLES = {"grid_worker", "community_staff", "street_dispatcher", "hotline"}
READ_ALL_ROLES = {"district_dispatcher", "supervisor", "admin"}


def get_user(session: Session, username: str) -> User:
    """The active user ``username`` with their unit chain (kept in memory between requests: see
    :mod:`workflows.principals`)."""
    user = user_by_name(session, username)
    if user is None or not user.active:
        raise NotFound(msg("no active user '%(username)s'", username=username))
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with this username and password, else None (same answer for both failures)."""
    from .passwords import verify_password

    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.active or not verify_password(user.password_hash, password or ""):
        return None
    return user


def get_unit(session: Session, code: str, kind: str | None = None) -> OrgUnit:
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == code))
    if unit is None or not unit.active or (kind and unit.kind != kind):
        text = (msg("unknown %(kind)s '%(code)s'", kind=kind, code=code) if kind
                else msg("unknown org unit '%(code)s'", code=code))
        raise ValidationFailed(text, field_errors={kind or "unit": [text]})
    return unit


def get_category(session: Session, code: str) -> Category:
    category = session.get(Category, code)
    if category is None or not category.active:
        text = msg("unknown category '%(code)s'", code=code)
        raise ValidationFailed(text, field_errors={"category": [text]})
    return category


def district_of(unit: OrgUnit) -> OrgUnit:
    while unit.parent is not None:
        unit = unit.parent
    return unit


def may_act_on(user: User, lane: str | None, owner_unit: str | None) -> bool:
    """Role from the lane, org unit from the diagram's owner property: both must match."""
    return (lane in LANE_ROLES and user.role in LANE_ROLES[lane] and owner_unit is not None
            and owner_unit == user.unit.code)


def check_may_act(user: User, item) -> None:
    if not may_act_on(user, item.lane, item.owner_unit):
        if item.owner_unit:
            raise Forbidden(msg("%(username)s (%(role)s, %(unit)s) may not act on work item %(id)s '%(title)s' "
                                "owned by %(owner)s", username=user.username, role=user.role, unit=user.unit.code,
                                id=item.id, title=item.title, owner=item.owner_unit))
        raise Forbidden(msg("%(username)s (%(role)s, %(unit)s) may not act on work item %(id)s '%(title)s' "
                            "owned by nobody", username=user.username, role=user.role, unit=user.unit.code,
                            id=item.id, title=item.title))


def visible_calls(user: User) -> ColumnElement[bool]:
    """The calls ``user`` may see, as a WHERE clause: the one rule behind both lists and single reads.

    domain.md §1: the district's dispatchers, supervisors and admins see everything; the hotline
    (12345 intake, Open311) the calls it filed (and their child tickets, which keep the reporter);
    a community its own calls, a street its communities'; a department the calls with work
    dispatched to it (a child ticket: only its own).  Any other unit sees nothing.
    """
    if user.role in READ_ALL_ROLES:
        return true()
    if user.role == "hotline":
        return Call.reporter_id == user.id
    kind, code = user.unit.kind, user.unit.code
    if kind == "community":
        return Call.community_code == code
    if kind == "street":
        return Call.street_code == code
    if kind == "department":
        return or_(Call.department_code == code,
                   exists().where(WorkItem.instance_id == Call.instance_id, WorkItem.owner_unit == code))
    return false()


def may_see_call(session: Session, user: User, call: Call) -> bool:
    """Whether ``user`` may see ``call``: :func:`visible_calls` asked about this one call (so a list
    never shows a call its detail refuses, nor the other way round)."""
    clause = visible_calls(user)
    if isinstance(clause, True_):
        return True
    if isinstance(clause, False_):
        return False
    return session.scalar(select(Call.id).where(Call.id == call.id, clause)) is not None
