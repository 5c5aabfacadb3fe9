"""Metrics and the monthly 红黑榜."""
from __future__ import annotations

import re

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import select

from workflows.metrics import dashboard, monthly_ranking
from workflows.models import OrgUnit
from workflows.supervision import OVERSIGHT_ROLES

from .export import FORMATS, table_response
from .security import ctx, require

blp = Blueprint("reports", __name__, url_prefix="/api/v1/reports", description="Metrics and rankings")


def _month(value: str) -> None:
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
        raise ValidationError("a month as YYYY-MM")


class RankingQuery(Schema):
    month = fields.String(required=True, validate=_month, metadata={"example": "2026-10"})
    kind = fields.String(load_default="department", validate=validate.OneOf(("department", "street")))
    top = fields.Integer(load_default=3, validate=validate.Range(min=1, max=20))
    format = fields.String(load_default="json", validate=validate.OneOf(FORMATS),
                           metadata={"description": "json, or csv / xlsx to download"})


class UnitMetricsSchema(Schema):
    """domain.md §4; rates are fractions (0-1), null when there was nothing to count."""

    unit = fields.String()
    name = fields.String()
    kind = fields.String()
    should_sign = fields.Integer()
    signed_on_time = fields.Integer()
    should_resolve = fields.Integer()
    resolved_on_time = fields.Integer()
    closed = fields.Integer()
    on_hold = fields.Integer(metadata={"description": "挂账: counted apart"})
    rated = fields.Integer()
    satisfied = fields.Integer()
    reworked = fields.Integer()
    overdue = fields.Integer()
    overtime_factor = fields.Float(allow_none=True, metadata={"description": "time used / limit, mean"})
    worst_factor = fields.Float(allow_none=True)
    on_time_sign = fields.Float(allow_none=True)
    on_time_resolve = fields.Float(allow_none=True)
    close_rate = fields.Float(allow_none=True)
    satisfaction = fields.Float(allow_none=True)
    rework_rate = fields.Float(allow_none=True)
    score = fields.Float(allow_none=True, metadata={"description": "sign 30 + resolve 35 + satisfaction 35"})
    flags = fields.List(fields.String())


class RankingSchema(Schema):
    month = fields.String()
    kind = fields.String()
    units = fields.List(fields.Nested(UnitMetricsSchema))
    red = fields.List(fields.String(), metadata={"description": "红榜: the best units with nothing overdue"})
    black = fields.List(fields.String(), metadata={"description": "黑榜: the worst, or any unit 3x over a limit"})


PERCENT = ("on_time_sign", "on_time_resolve", "close_rate", "satisfaction", "rework_rate")
RANKING_COLUMNS = [("unit", "单位 unit"), ("name", "名称 name"), ("score", "得分 score"), ("list", "红黑榜 list"),
                   ("on_time_sign", "按时签收率 on-time sign"), ("on_time_resolve", "按时办结率 on-time resolve"),
                   ("close_rate", "结案率 close rate"), ("satisfaction", "满意率 satisfaction"),
                   ("rework_rate", "返工率 rework rate"), ("overdue", "超时件 overdue"),
                   ("overtime_factor", "超时倍数 overtime factor")]


def _pct(value):
    return None if value is None else f"{value * 100:.1f}%"


class DashboardSchema(Schema):
    now = fields.DateTime()
    month = fields.String()
    overdue_total = fields.Integer()
    overdue_by_street = fields.Dict(keys=fields.String(), values=fields.Integer())
    overdue_by_department = fields.Dict(keys=fields.String(), values=fields.Integer())
    warnings_today = fields.List(fields.Dict(), metadata={"description": "running deadlines later today"})
    month_totals = fields.Dict(metadata={"description": "district-wide counts and rates of the month"})
    trend = fields.List(fields.Dict(), metadata={"description": "per day: filed, closed, breached"})
    units = fields.Dict(keys=fields.String(), values=fields.String(), metadata={"description": "unit code -> name"})


@blp.route("/dashboard", methods=["GET"])
@blp.response(200, DashboardSchema)
@require(*sorted(OVERSIGHT_ROLES))
def get_dashboard():
    """The supervisors' dashboard: overdue by street and department, today's deadlines, rates, 30-day trend"""
    c = ctx()
    d = dashboard(g.db, now=c.clock.now(), calendar=c.sla.calendars.get(g.db))
    units = {code: name for code, name in g.db.execute(select(OrgUnit.code, OrgUnit.name))}
    return {**d.__dict__, "units": units}


@blp.route("/ranking", methods=["GET"])
@blp.arguments(RankingQuery, location="query")
@blp.response(200, RankingSchema)
def ranking(args):
    """Monthly metrics of every department (or street) and the 红黑榜"""
    c = ctx()
    r = monthly_ranking(g.db, args["month"], args["kind"], now=c.clock.now(), calendar=c.sla.calendars.get(g.db),
                        top=args["top"])
    if args["format"] != "json":
        red, black = {u.unit for u in r.red}, {u.unit for u in r.black}
        rows = [{**u.as_dict(), "list": "红榜 red" if u.unit in red else "黑榜 black" if u.unit in black else "",
                 **{k: _pct(getattr(u, k)) for k in PERCENT}} for u in r.units]
        return table_response(rows, RANKING_COLUMNS, args["format"], f"ranking-{r.kind}-{r.month}")
    return {"month": r.month, "kind": r.kind, "units": [u.as_dict() for u in r.units],
            "red": [u.unit for u in r.red], "black": [u.unit for u in r.black]}
