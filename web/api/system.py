"""Health, the clock, and moving virtual time (admin, virtual clock only)."""
from __future__ import annotations

from datetime import timedelta

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import select

from engine.clock import parse_duration
from engine.errors import Conflict, ValidationFailed

from .security import public, require, services

MAX_MOVE = timedelta(days=400)  # a simulation moves days or months, never centuries
blp = Blueprint("system", __name__, url_prefix="/api/v1", description="Health and time")


class HealthSchema(Schema):
    status = fields.String(metadata={"example": "ok"})
    now = fields.DateTime()
    clock = fields.String(validate=validate.OneOf(("wall", "virtual")),
                          metadata={"description": "wall, or virtual (an admin moves it: POST /api/v1/admin/clock)"})
    database = fields.String()


class MoveClockSchema(Schema):
    set = fields.AwareDateTime(load_default=None, metadata={"description": "ISO 8601 with offset"})
    advance = fields.String(load_default=None, metadata={"description": "a duration: 2h, 90m, 3d, PT2H"})

    @validates_schema
    def _one(self, data, **_):
        if (data.get("set") is None) == (data.get("advance") is None):
            raise ValidationError("give exactly one of 'set' (ISO 8601) or 'advance' (e.g. 2h, 90m, PT2H)")


class MovedClockSchema(Schema):
    now = fields.DateTime()
    fired = fields.Dict(keys=fields.String(), values=fields.Integer(),
                        metadata={"description": "what the sweep run right after fired, per job"})


@blp.route("/health", methods=["GET"])
@blp.response(200, HealthSchema)
@blp.doc(security=[])
@public
def health():
    """Liveness and readiness: the database answers; the current (possibly virtual) time"""
    svc = services()
    g.db.execute(select(1))
    return {"status": "ok", "now": svc.clock.now(), "clock": "virtual" if getattr(svc.clock, "virtual", False)
            else "wall", "database": svc.engine.dialect.name}


@blp.route("/admin/clock", methods=["POST"])
@blp.arguments(MoveClockSchema)
@blp.response(200, MovedClockSchema)
@require("admin")
def move_virtual_clock(body):
    """Set or advance the virtual clock, then run one sweep (only when HUYING_CLOCK=virtual)"""
    svc = services()
    if not getattr(svc.clock, "virtual", False):
        raise Conflict("the clock is the wall clock; set HUYING_CLOCK=virtual to move time")
    field = "set" if body["set"] is not None else "advance"
    try:
        if field == "set":
            if body["set"] - svc.clock.now() > MAX_MOVE:
                raise ValueError("move the clock at most 400 days at a time")
            now = svc.clock.set(body["set"])
        else:
            delta = parse_duration(body["advance"])
            if delta > MAX_MOVE:
                raise ValueError("advance at most 400 days at a time")
            now = svc.clock.advance(delta)
    except (ValueError, OverflowError) as exc:
        raise ValidationFailed(str(exc), field_errors={field: [str(exc)]}) from None
    g.db.rollback()  # the sweep runs in its own transactions
    from web.scheduler import sweep_once

    return {"now": now, "fired": sweep_once(svc)}
