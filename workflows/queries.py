"""Searching calls within what the asking user may see (domain.md §1 visibility)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, exists, false, func, or_, select
from sqlalchemy.sql import ColumnElement

from engine.models import SlaClock, WorkItem

from .context import ServiceContext
from .models import Call, User
from .org import READ_ALL_ROLES

SORTS = {"created_at": Call.created_at, "updated_at": Call.updated_at, "number": Call.number,
         "status": Call.status}


def visible_calls(user: User) -> ColumnElement[bool]:
    """A WHERE clause: the calls ``user`` may see."""
    if user.role in READ_ALL_ROLES:
        return Call.id.is_not(None)
    if user.role == "hotline":
        return Call.reporter_id == user.id
    kind = user.unit.kind
    if kind == "community":
        return Call.community_code == user.unit.code
    if kind == "street":
        return Call.street_code == user.unit.code
    if kind == "department":
        return or_(Call.department_code == user.unit.code,
                   exists().where(WorkItem.instance_id == Call.instance_id, WorkItem.owner_unit == user.unit.code))
    return false()


def overdue_clause(now: datetime) -> ColumnElement[bool]:
    return exists().where(SlaClock.instance_id == Call.instance_id, SlaClock.state == "running",
                          SlaClock.due_at <= now)


@dataclass
class CallFilter:
    status: list[str] | None = None
    level: str | None = None
    category: str | None = None
    street: str | None = None
    community: str | None = None
    department: str | None = None
    overdue: bool | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    q: str | None = None
    include_children: bool = False
    sort: str = "-created_at"
    page: int = 1
    per_page: int = 20


def search_calls(ctx: ServiceContext, f: CallFilter) -> tuple[int, list[tuple[Call, bool]]]:
    """(total, [(call, overdue)]) of the calls the user may see that match ``f``, one page of them."""
    now = ctx.clock.now()
    cond = [visible_calls(ctx.user)]
    if not f.include_children:
        cond.append(Call.parent_id.is_(None))
    if f.status:
        cond.append(Call.status.in_(f.status))
    if f.level:
        cond.append(Call.level == f.level)
    if f.category:
        cond.append(Call.category_code == f.category)
    if f.street:
        cond.append(Call.street_code == f.street)
    if f.community:
        cond.append(Call.community_code == f.community)
    if f.department:
        cond.append(or_(Call.department_code == f.department,
                        exists().where(WorkItem.instance_id == Call.instance_id,
                                       WorkItem.owner_unit == f.department, WorkItem.lane == "department")))
    if f.overdue is not None:
        cond.append(overdue_clause(now) if f.overdue else ~overdue_clause(now))
    if f.created_from:
        cond.append(Call.created_at >= f.created_from)
    if f.created_to:
        cond.append(Call.created_at < f.created_to)
    if f.q:
        escaped = f.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        like = "%" + escaped + "%"
        cond.append(or_(Call.number.like(like, escape="\\"), Call.description.like(like, escape="\\"),
                        Call.location.like(like, escape="\\")))
    where = and_(*cond)
    total = ctx.session.scalar(select(func.count()).select_from(Call).where(where)) or 0
    column = SORTS[f.sort.lstrip("-")]
    order = (column.desc(), Call.id.desc()) if f.sort.startswith("-") else (column.asc(), Call.id.asc())
    rows = ctx.session.execute(
        select(Call, overdue_clause(now).label("overdue")).where(where).order_by(*order)
        .limit(f.per_page).offset((f.page - 1) * f.per_page)).all()
    return total, [(call, bool(overdue)) for call, overdue in rows]
