"""Metrics and the monthly 红黑榜."""
from __future__ import annotations

import re

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate

from workflows.metrics import monthly_ranking

from .security import ctx

blp = Blueprint("reports", __name__, url_prefix="/api/v1/reports", description="Metrics and rankings")


def _month(value: str) -> None:
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
        raise ValidationError("a month as YYYY-MM")


class RankingQuery(Schema):
    month = fields.String(required=True, validate=_month, metadata={"example": "2026-10"})
    kind = fields.String(load_default="department", validate=validate.OneOf(("department", "street")))
    top = fields.Integer(load_default=3, validate=validate.Range(min=1, max=20))


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


@blp.route("/ranking", methods=["GET"])
@blp.arguments(RankingQuery, location="query")
@blp.response(200, RankingSchema)
def ranking(args):
    """Monthly metrics of every department (or street) and the 红黑榜"""
    c = ctx()
    r = monthly_ranking(g.db, args["month"], args["kind"], now=c.clock.now(), calendar=c.sla.calendars.get(g.db),
                        top=args["top"])
    return {"month": r.month, "kind": r.kind, "units": [u.as_dict() for u in r.units],
            "red": [u.unit for u in r.red], "black": [u.unit for u in r.black]}
