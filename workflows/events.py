"""Domain events for integrators, written to the durable outbox in the transaction that caused them.

``emit`` adds one ``outbox_event`` row and one pending ``webhook_delivery`` per
active subscription that wants the event type; nothing is sent here.  The
deliverer (``workflows.webhooks``) sends them after the transaction has
committed, so a rolled-back action never announces anything, and a crash
after the commit loses nothing.  With no subscriber for a type, nothing is
written at all.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
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


def emit(session: Session, event_type: str, call: Call, *, at: datetime, actor: str, data: dict | None = None) -> int:
    """Queue ``event_type`` about ``call`` for every subscriber that wants it; returns how many deliveries."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type}")
    subscribers = [sid for sid, events in session.execute(
        select(WebhookSubscription.id, WebhookSubscription.events).where(WebhookSubscription.active.is_(True)))
        if not events or event_type in events]
    if not subscribers:
        return 0
    event = OutboxEvent(event_type=event_type, subject=call.number or "", occurred_at=at,
                        payload={"type": event_type, "occurred_at": _iso(at), "actor": actor,
                                 "call": call_summary(call), "data": data or {}})
    session.add(event)
    session.flush()
    session.add_all(WebhookDelivery(subscription_id=sid, event_id=event.id, state="pending", attempts=0,
                                    next_attempt_at=at) for sid in subscribers)
    return len(subscribers)
