"""Domain events for integrators, written to the durable outbox in the transaction that caused them.

``emit`` adds one ``outbox_event`` row and one pending ``webhook_delivery`` per
active subscription that wants the event type; nothing is sent here.  The
deliverer (``workflows.webhooks``) sends them after the transaction has
committed, so a rolled-back action never announces anything, and a crash
after the commit loses nothing.  With no subscriber for a type, nothing is
written at all.  Who subscribes is read at most once a second per database
(:func:`subscribers`): a new or changed subscription takes effect in this
process at once, in others within the second.
"""
from __future__ import annotations

import threading
import time
import weakref
from datetime import datetime

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from engine.clock import SHANGHAI

from .models import Call, OutboxEvent, WebhookDelivery, WebhookSubscription

EVENT_TYPES = ("call.filed", "call.dispatched", "call.signed", "call.warning", "call.breach", "call.supervised",
               "call.closed")
# the process signal the scheduler delivers -> the event integrators receive
SIGNAL_EVENTS = {"sla_warning": "call.warning", "sla_breach": "call.breach", "sla_overdue": "call.supervised"}


def _iso(moment: datetime | None) -> str | None:
    """ISO 8601 in Asia/Shanghai, whether the value came from the database (UTC) or the clock."""
    return moment.astimezone(SHANGHAI).isoformat() if moment is not None else None


def call_summary(call: Call) -> dict:
    return {"number": call.number, "status": call.status, "level": call.level, "category": call.category_code,
            "urgency": call.urgency, "community": call.community_code, "street": call.street_code,
            "created_at": _iso(call.created_at), "closed_at": _iso(call.closed_at)}


SUBSCRIBERS_TTL = 1.0  # seconds a process trusts its list of active subscriptions
_subscribers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # engine -> (read at, generation, rows)
_subscribers_lock = threading.Lock()
_generation = 0


@event.listens_for(WebhookSubscription, "after_insert")
@event.listens_for(WebhookSubscription, "after_update")
def _subscriptions_changed(_mapper, _connection, _target) -> None:
    global _generation
    _generation += 1  # this process looks again at once; others within their ttl


def subscribers(session: Session, event_type: str) -> list[int]:
    """Ids of the active subscriptions that want ``event_type`` (the list is cached, see above)."""
    bind = session.get_bind()
    now = time.monotonic()
    with _subscribers_lock:
        cached = _subscribers.get(bind)
    if cached is None or now - cached[0] >= SUBSCRIBERS_TTL or cached[1] != _generation:
        generation = _generation
        rows = [(sid, tuple(events or ())) for sid, events in session.execute(
            select(WebhookSubscription.id, WebhookSubscription.events).where(WebhookSubscription.active.is_(True))
            .order_by(WebhookSubscription.id))]
        cached = (now, generation, rows)
        with _subscribers_lock:
            _subscribers[bind] = cached
    return [sid for sid, events in cached[2] if not events or event_type in events]


def emit(session: Session, event_type: str, call: Call, *, at: datetime, actor: str, data: dict | None = None) -> int:
    """Queue ``event_type`` about ``call`` for every subscriber that wants it; returns how many deliveries."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type}")
    subscribers_ = subscribers(session, event_type)
    if not subscribers_:
        return 0
    outbox = OutboxEvent(event_type=event_type, subject=call.number or "", occurred_at=at,
                        payload={"type": event_type, "occurred_at": _iso(at), "actor": actor,
                                 "call": call_summary(call), "data": data or {}})
    session.add(outbox)
    session.flush()
    session.add_all(WebhookDelivery(subscription_id=sid, event_id=outbox.id, state="pending", attempts=0,
                                    next_attempt_at=at) for sid in subscribers_)
    return len(subscribers_)
