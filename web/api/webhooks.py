"""Webhooks (admin): subscribers, the delivery log, redelivery and test pings.

How deliveries are signed, retried and ordered: see ``workflows.webhooks``.
"""
from __future__ import annotations

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from workflows.events import EVENT_TYPES
from workflows.webhooks import (
    DELIVERY_STATES,
    MAX_ID,
    PING,
    SubscriptionCreateSchema,
    SubscriptionOut,
    SubscriptionUpdateSchema,
    create_subscription,
    deactivate_subscription,
    delivery_attempts,
    delivery_counts,
    event_body,
    get_delivery,
    get_subscription,
    list_deliveries,
    list_subscriptions,
    ping,
    redeliver,
    update_subscription,
)

from .security import ctx, require

blp = Blueprint("webhooks", __name__, url_prefix="/api/v1/admin/webhooks",
                description="Webhooks (admin): subscribers receive signed JSON events (call filed, dispatched, "
                            "signed, warning, breach, supervised, closed); every delivery is logged. Each POST "
                            "carries X-Huying-Event, X-Huying-Delivery, X-Huying-Timestamp and X-Huying-Signature: "
                            "sha256=hex(HMAC-SHA256(secret, timestamp + '.' + raw body)); 2xx is success, anything "
                            "else is retried after 30 s, 1 min, 2 min, ... (at most 1 h apart), 10 attempts in all.")

ADMIN = "admin"  # every route: @require(ADMIN) outside the argument parsing, so a non-admin gets 403 first


class PageArgs(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100000))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class SubscriptionQuery(PageArgs):
    active = fields.Boolean(load_default=None)


class DeliveryQuery(PageArgs):
    subscription = fields.Integer(load_default=None, validate=validate.Range(min=1, max=MAX_ID))
    state = fields.String(load_default=None, validate=validate.OneOf(DELIVERY_STATES))
    event = fields.String(load_default=None, validate=validate.OneOf((*EVENT_TYPES, PING)))
    call = fields.String(load_default=None, validate=validate.Length(min=1, max=64),
                         metadata={"description": "a call number"})


class SubscriptionSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    url = fields.String()
    events = fields.List(fields.String(), metadata={"description": "event types it receives; empty: all"})
    active = fields.Boolean()
    created_at = fields.DateTime()
    created_by = fields.String()
    pending = fields.Integer(metadata={"description": "deliveries waiting to be sent or retried"})
    dead = fields.Integer(metadata={"description": "deliveries given up on (redeliver them from the log)"})


class SubscriptionSecretSchema(SubscriptionSchema):
    secret = fields.String(metadata={"description": "the HMAC-SHA256 key: shown only in the answer that set it"})


class SubscriptionPageSchema(Schema):
    items = fields.List(fields.Nested(SubscriptionSchema))
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()


class SubscriptionRefSchema(Schema):
    id = fields.Integer()
    name = fields.String()


class DeliverySchema(Schema):
    id = fields.Integer(metadata={"description": "sent as X-Huying-Delivery"})
    subscription = fields.Nested(SubscriptionRefSchema)
    event_id = fields.Integer()
    event = fields.String(metadata={"description": "the event type"})
    call = fields.String(allow_none=True, metadata={"description": "the call number (none for a ping)"})
    occurred_at = fields.DateTime()
    state = fields.String(validate=validate.OneOf(DELIVERY_STATES))
    attempts = fields.Integer(metadata={"description": "attempts made (since the last redelivery)"})
    next_attempt_at = fields.DateTime(allow_none=True)
    last_attempt_at = fields.DateTime(allow_none=True)
    last_status = fields.Integer(allow_none=True, metadata={"description": "HTTP status of the last answer"})
    last_error = fields.String(allow_none=True)
    delivered_at = fields.DateTime(allow_none=True)


class AttemptSchema(Schema):
    attempt = fields.Integer(metadata={"description": "the delivery's attempt counter (restarts on a redelivery)"})
    sent_at = fields.DateTime()
    answered_at = fields.DateTime()
    duration_ms = fields.Float()
    status = fields.Integer(allow_none=True, metadata={"description": "HTTP status; none when nothing answered"})
    error = fields.String(allow_none=True)
    outcome = fields.String(validate=validate.OneOf(("delivered", "retry", "dead", "late")),
                            metadata={"description": "late: the answer came after the claim had lapsed"})


class DeliveryDetailSchema(DeliverySchema):
    payload = fields.Dict(metadata={"description": "the JSON body the subscriber receives"})
    history = fields.List(fields.Nested(AttemptSchema), metadata={"description": "every attempt, oldest first"})


class DeliveryPageSchema(Schema):
    items = fields.List(fields.Nested(DeliverySchema))
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()


def _subscription_out(row, counts: dict | None = None, secret: str | None = None) -> dict:
    counts = counts if counts is not None else delivery_counts(g.db, [row.id])[row.id]
    out = {"id": row.id, "name": row.name, "url": row.url, "events": list(row.events or []), "active": row.active,
           "created_at": row.created_at, "created_by": row.created_by, **counts}
    if secret is not None:
        out["secret"] = secret
    return out


def _changed_out(result: SubscriptionOut) -> dict:
    return _subscription_out(result.subscription, secret=result.secret)


def _delivery_out(row, payload: bool = False) -> dict:
    event = row.event
    out = {"id": row.id, "subscription": {"id": row.subscription.id, "name": row.subscription.name},
           "event_id": event.id, "event": event.event_type, "call": event.subject or None,
           "occurred_at": event.occurred_at, "state": row.state, "attempts": row.attempts,
           "next_attempt_at": row.next_attempt_at, "last_attempt_at": row.last_attempt_at,
           "last_status": row.last_status, "last_error": row.last_error, "delivered_at": row.delivered_at}
    if payload:
        out["payload"] = event_body(event)
    return out


# ---- subscriptions ------------------------------------------------------------------------------
@blp.route("/subscriptions", methods=["GET"])
@require(ADMIN)
@blp.arguments(SubscriptionQuery, location="query")
@blp.response(200, SubscriptionPageSchema)
def subscriptions(args):
    """Webhook subscribers, with how many deliveries are pending or dead"""
    per_page = args["per_page"]
    total, rows = list_subscriptions(g.db, active=args["active"], limit=per_page,
                                     offset=(args["page"] - 1) * per_page)
    counts = delivery_counts(g.db, [r.id for r in rows])
    return {"items": [_subscription_out(r, counts[r.id]) for r in rows], "total": total, "page": args["page"],
            "per_page": per_page}


@blp.route("/subscriptions", methods=["POST"])
@require(ADMIN)
@blp.arguments(SubscriptionCreateSchema)
@blp.response(201, SubscriptionSecretSchema)
def create(body):
    """Add a subscriber (the answer shows its secret, once)"""
    result = create_subscription(ctx(), body)
    g.db.commit()
    out = _changed_out(result)
    return out, 201, {"Location": f"{blp.url_prefix}/subscriptions/{out['id']}"}


@blp.route("/subscriptions/<int:subscription_id>", methods=["GET"])
@require(ADMIN)
@blp.response(200, SubscriptionSchema)
def subscription(subscription_id):
    """One subscriber"""
    return _subscription_out(get_subscription(g.db, subscription_id))


@blp.route("/subscriptions/<int:subscription_id>", methods=["PATCH"])
@require(ADMIN)
@blp.arguments(SubscriptionUpdateSchema)
@blp.response(200, SubscriptionSecretSchema)
def update(body, subscription_id):
    """Change a subscriber: name, url, events, secret (or rotate_secret), active"""
    result = update_subscription(ctx(), subscription_id, body)
    g.db.commit()
    return _changed_out(result)


@blp.route("/subscriptions/<int:subscription_id>", methods=["DELETE"])
@require(ADMIN)
@blp.response(200, SubscriptionSchema)
def deactivate(subscription_id):
    """Deactivate a subscriber: nothing more is queued for it and its pending deliveries are cancelled

    The subscriber and its delivery log are kept; PATCH ``{"active": true}`` starts it again.
    """
    result = deactivate_subscription(ctx(), subscription_id)
    g.db.commit()
    return _changed_out(result)


@blp.route("/subscriptions/<int:subscription_id>/ping", methods=["POST"])
@require(ADMIN)
@blp.response(202, DeliverySchema)
def ping_subscription(subscription_id):
    """Queue a test event (``ping``) to a subscriber; the next sweep sends it"""
    delivery = ping(ctx(), subscription_id)
    g.db.commit()
    return _delivery_out(delivery)


# ---- the delivery log ---------------------------------------------------------------------------
@blp.route("/deliveries", methods=["GET"])
@require(ADMIN)
@blp.arguments(DeliveryQuery, location="query")
@blp.response(200, DeliveryPageSchema)
def deliveries(args):
    """The delivery log, newest first: event, call, state, attempts, last status and error, times"""
    per_page = args["per_page"]
    total, rows = list_deliveries(g.db, subscription=args["subscription"], state=args["state"], event=args["event"],
                                  call=args["call"], limit=per_page, offset=(args["page"] - 1) * per_page)
    return {"items": [_delivery_out(r) for r in rows], "total": total, "page": args["page"], "per_page": per_page}


@blp.route("/deliveries/<int:delivery_id>", methods=["GET"])
@require(ADMIN)
@blp.response(200, DeliveryDetailSchema)
def delivery(delivery_id):
    """One delivery, with the body the subscriber receives and every attempt with its answer"""
    row = get_delivery(g.db, delivery_id)
    out = _delivery_out(row, payload=True)
    out["history"] = [{"attempt": a.attempt, "sent_at": a.sent_at, "answered_at": a.answered_at,
                       "duration_ms": a.duration_ms, "status": a.status, "error": a.error, "outcome": a.outcome}
                      for a in delivery_attempts(g.db, row.id)]
    return out


@blp.route("/deliveries/<int:delivery_id>/redeliver", methods=["POST"])
@require(ADMIN)
@blp.response(200, DeliverySchema)
def redeliver_delivery(delivery_id):
    """Send a dead or delivered delivery again (pending now, with a fresh round of attempts)"""
    row = redeliver(ctx(), delivery_id)
    g.db.commit()
    return _delivery_out(row)
