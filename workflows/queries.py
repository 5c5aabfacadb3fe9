"""Searching calls within what the asking user may see (domain.md §1 visibility)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import selectinload
from sqlalchemy.sql import ColumnElement

from engine.models import SlaClock, WorkItem

from .context import ServiceContext
from .models import Call
from .org import visible_calls

SORTS = {"created_at": Call.created_at, "updated_at": Call.updated_at, "number": Call.number,
         "status": Call.status}


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
    mine: bool = False  # only the calls the asking user filed
    sort: str = "-created_at"
    page: int = 1
    per_page: int = 20


def search_calls(ctx: ServiceContext, f: CallFilter) -> tuple[int, list[tuple[Call, bool]]]:
    """(total, [(call, overdue)]) of the calls the user may see that match ``f``, one page of them."""
    now = ctx.clock.now()
    cond = [visible_calls(ctx.user)]
    if not f.include_children:
        cond.append(Call.parent_id.is_(None))
    if f.mine:
        cond.append(Call.reporter_id == ctx.user.id)
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
        select(Call, overdue_clause(now).label("overdue")).where(where).options(selectinload(Call.reporter))
        .order_by(*order)
        .limit(f.per_page).offset((f.page - 1) * f.per_page)).all()
    return total, [(call, bool(overdue)) for call, overdue in rows]


# ---- duplicates -----------------------------------------------------------------------------------

def _distance_m(a_lat, a_lon, b_lat, b_lon) -> float:
    """Great-circle distance in metres (haversine)."""
    from math import asin, cos, radians, sin, sqrt

    dlat, dlon = radians(b_lat - a_lat), radians(b_lon - a_lon)
    h = sin(dlat / 2) ** 2 + cos(radians(a_lat)) * cos(radians(b_lat)) * sin(dlon / 2) ** 2
    return 2 * 6371000 * asin(sqrt(h))


def _text_similarity(a: str, b: str) -> float:
    """Share of character bigrams in common (Chinese addresses have no spaces to split on)."""
    def grams(text):
        text = "".join(text.split())
        return {text[i:i + 2] for i in range(len(text) - 1)} or {text}
    ga, gb = grams(a or ""), grams(b or "")
    return len(ga & gb) / len(ga | gb) if ga and gb else 0.0


@dataclass
class Duplicate:
    call: Call
    score: float  # 0-1
    distance_m: float | None
    reason: str


NEAR_M = 300.0


def possible_duplicates(ctx: ServiceContext, call: Call, *, days: int = 7, limit: int = 5) -> list[Duplicate]:
    """Earlier open calls that may be the same problem: same category, near the same place, recent.

    "Near": within 300 m when both calls have coordinates, else the same community with a
    similar address.  Only calls the user may see; never child tickets, voided or merged calls.
    """
    from datetime import timedelta

    since = call.created_at - timedelta(days=days)
    rows = ctx.session.scalars(select(Call).where(
        visible_calls(ctx.user), Call.category_code == call.category_code, Call.parent_id.is_(None),
        Call.id < call.id, Call.created_at >= since, Call.created_at <= call.created_at,
        Call.status.notin_(("voided", "merged")), Call.street_code == call.street_code)
        .order_by(Call.created_at.desc()).limit(200)).all()
    found = []
    for other in rows:
        distance = None
        if None not in (call.latitude, call.longitude, other.latitude, other.longitude):
            distance = _distance_m(call.latitude, call.longitude, other.latitude, other.longitude)
        text = _text_similarity(call.location, other.location)
        if distance is not None and distance <= NEAR_M:
            score, reason = 1.0 - distance / (2 * NEAR_M), f"{distance:.0f} m away"
        elif other.community_code == call.community_code and text >= 0.3:
            score, reason = 0.4 + 0.5 * text, "same community, similar address"
        else:
            continue
        if other.status == "closed":
            score *= 0.8
        found.append(Duplicate(other, round(score, 3), distance, reason))
    found.sort(key=lambda d: (-d.score, -d.call.id))
    return found[:limit]


MY_CALLS_TABS = ("open", "finished", "all")


@dataclass
class MyCalls:
    """The calls a user filed: one page of one tab, how many each tab holds, which are overdue."""
    tabs: dict[str, int]
    rows: list[tuple[Call, bool]]


def my_calls(ctx: ServiceContext, show: str = "open", limit: int = 20, offset: int = 0) -> MyCalls:
    """The calls ``ctx.user`` filed, newest first: ``open`` (not closed), ``finished`` or ``all``."""
    base = [Call.reporter_id == ctx.user.id, Call.parent_id.is_(None)]
    counts = dict(ctx.session.execute(select(Call.closed_at.is_(None), func.count()).where(*base)
                                      .group_by(Call.closed_at.is_(None))).all())
    tabs = {"open": counts.get(True, 0), "finished": counts.get(False, 0)}
    tabs["all"] = tabs["open"] + tabs["finished"]
    where = list(base)
    if show == "open":
        where.append(Call.closed_at.is_(None))
    elif show == "finished":
        where.append(Call.closed_at.is_not(None))
    rows = ctx.session.execute(select(Call, overdue_clause(ctx.clock.now())).where(*where)
                               .order_by(Call.created_at.desc(), Call.id.desc()).limit(limit).offset(offset)).all()
    return MyCalls(tabs, [(call, bool(overdue)) for call, overdue in rows])


def my_counts(ctx: ServiceContext) -> tuple[int, int]:
    """(open work items of my unit, calls I filed): the figures of a home page."""
    user = ctx.user
    open_items = ctx.session.scalar(select(func.count()).select_from(WorkItem).where(
        WorkItem.owner_unit == user.unit.code, WorkItem.state == "open")) or 0
    filed = ctx.session.scalar(select(func.count()).select_from(Call).where(Call.reporter_id == user.id)) or 0
    return open_items, filed
