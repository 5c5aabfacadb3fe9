"""Webhooks: admin-managed subscribers receive signed JSON events from the durable outbox.

``workflows.events.emit`` writes an ``outbox_event`` and one pending
``webhook_delivery`` per interested subscriber in the transaction of the action
itself, so a rolled-back action announces nothing.  :func:`deliver_due` (the
scheduler's ``deliver_webhooks`` job) sends them after that commit.

What a receiver gets
--------------------
``POST <url>`` with the body ``{"id": <event id>, "type": "call.closed",
"occurred_at": "...", "actor": "...", "call": {...}, "data": {...}}`` (UTF-8
JSON) and the headers::

    Content-Type: application/json
    X-Huying-Event: call.closed                 (the type; "ping" for a test event)
    X-Huying-Delivery: 1234                     (this event to this subscriber; the same on every retry)
    X-Huying-Timestamp: 1760230800              (Unix seconds when this attempt was sent)
    X-Huying-Signature: sha256=<hex>            (see below)

Event types: ``call.filed``, ``call.dispatched``, ``call.signed``,
``call.warning``, ``call.breach``, ``call.supervised``, ``call.closed`` (a
subscription lists the ones it wants; an empty list means all) and ``ping``
(sent only when an administrator asks for a test delivery).

Verifying a delivery
--------------------
The signature is ``HMAC-SHA256(secret, f"{timestamp}.".encode() + raw_body)``
in lowercase hex, prefixed with ``sha256=``; the secret is the subscription's
(shown once when it is created or rotated).  Compute it over the raw bytes of
the body, before parsing any JSON, compare in constant time, and refuse
timestamps too far from your clock (replays)::

    import hashlib, hmac, time

    def verify_signature(secret, timestamp, body, signature, tolerance=300):
        if abs(time.time() - int(timestamp)) > tolerance:
            return False
        mac = hmac.new(secret.encode(), f"{int(timestamp)}.".encode() + body, hashlib.sha256)
        return hmac.compare_digest("sha256=" + mac.hexdigest(), signature)

(:func:`verify_signature` below is the same, a little more defensive.)

Delivery semantics
------------------
* **Success** is any 2xx answer within :data:`TIMEOUT_SECONDS`.  Anything else
  (a 3xx — redirects are not followed —, 4xx, 5xx, a timeout, a refused
  connection) is a failed attempt: it is retried after 30 s, 1 min, 2 min,
  4 min ... (doubling, at most 1 h apart; no jitter, so the delivery log's
  ``next_attempt_at`` is exact), and after :data:`MAX_ATTEMPTS` failed attempts
  (about three hours) the delivery is ``dead``.  An administrator can
  redeliver a dead (or delivered) one.
* **At least once.**  A deliverer that dies between sending and recording the
  answer leaves the delivery pending; it is sent again once its lease
  (:data:`LEASE`) runs out.  Deduplicate on ``X-Huying-Delivery`` (or on the
  body's ``id`` plus your subscription).
* **Order: per call, per subscriber.**  Events about one call reach one
  subscriber in the order they happened: a later event waits while an earlier
  one for the same call is still pending (retrying or in flight), and goes
  once that one is delivered or dead.  Events of different calls are
  independent, so one call's failing event never holds up the others.  A
  redelivery is, by its nature, out of order: compare ``occurred_at`` (or
  ``call.status``) with what you already have.
* **No two deliverers send the same attempt.**  A deliverer claims one due
  delivery in a short transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
  a compare-and-set on the attempt counter everywhere), pushing its
  ``next_attempt_at`` forward by the lease, commits, sends without holding any
  transaction or row lock, then records the answer only if its claim still
  stands.  A subscriber that failed once is not tried again in the same
  sweep, so a receiver that is down costs one timeout per sweep, not one per
  queued event.
* Deactivating a subscription cancels its pending deliveries (they become
  ``dead``, "cancelled: subscription deactivated"); the URL and secret are read
  at send time, so changing them applies to deliveries still pending.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from marshmallow import Schema, fields, validate
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, aliased

from engine.audit import record_audit
from engine.clock import Clock
from engine.errors import Conflict, Forbidden, NotFound, ValidationFailed, msg

from .calls import _load
from .context import ServiceContext
from .events import EVENT_TYPES
from .models import OutboxEvent, WebhookAttempt, WebhookDelivery, WebhookSubscription

log = logging.getLogger(__name__)

DELIVERY_STATES = ("pending", "delivered", "dead")
PING = "ping"
MAX_ATTEMPTS = 10
TIMEOUT_SECONDS = 5.0
# while an attempt is in flight its next_attempt_at is pushed this far ahead: a deliverer that dies
# mid-attempt leaves the delivery to be retried after this, and nobody else sends it meanwhile
LEASE = timedelta(minutes=2)
BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)
SECRET_MIN = 16
MAX_ID = 2 ** 31 - 1
USER_AGENT = "Huying-Webhooks/1"
ADMIN_ROLES = {"admin"}


# ---- signing --------------------------------------------------------------------------------------
def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Huying-Signature`` value: ``sha256=`` + hex HMAC-SHA256(secret, "<timestamp>." + body)."""
    mac = hmac.new(secret.encode("utf-8"), f"{int(timestamp)}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, timestamp: str | int, body: bytes | str, signature: str,
                     tolerance: float | None = 300, *, now: float | None = None) -> bool:
    """Whether a delivery is authentic: the signature matches and the timestamp is within ``tolerance`` s.

    ``body`` is the raw request body (bytes as received); ``now`` defaults to ``time.time()``;
    ``tolerance=None`` skips the freshness check (e.g. when replaying a stored delivery).
    """
    try:
        ts = int(str(timestamp).strip())
    except (TypeError, ValueError):
        return False
    if tolerance is not None and abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    if isinstance(body, str):
        body = body.encode("utf-8")
    return hmac.compare_digest(sign(secret, ts, body), str(signature or "").strip())


def event_body(event: OutboxEvent) -> dict:
    """What a receiver gets: the outbox payload plus the event's id."""
    return {"id": event.id, **(event.payload or {})}


def encode_body(body: Mapping) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str).encode("utf-8")


def retry_delay(failed_attempts: int) -> timedelta:
    """How long after its ``failed_attempts``-th failed attempt a delivery is tried again."""
    return min(BACKOFF_FIRST * 2 ** max(failed_attempts - 1, 0), BACKOFF_MAX)


# ---- subscriptions --------------------------------------------------------------------------------
_NAME = validate.And(validate.Length(min=1, max=100), validate.Regexp(r".*\S", error=msg("must not be blank")))
_URL = {"schemes": {"http", "https"}, "require_tld": False, "validate": validate.Length(max=500),
        "metadata": {"description": "http(s) URL the events are POSTed to"}}
_EVENTS = {"validate": validate.Length(max=len(EVENT_TYPES)),
           "metadata": {"description": f"event types to receive ({', '.join(EVENT_TYPES)}); empty: all"}}
_SECRET = {"validate": validate.Length(min=SECRET_MIN, max=200), "load_only": True,
           "metadata": {"description": f"the HMAC key (at least {SECRET_MIN} characters); "
                                       "leave out to have a strong one generated (shown once)"}}


class SubscriptionCreateSchema(Schema):
    name = fields.String(required=True, validate=_NAME)
    url = fields.Url(required=True, **_URL)
    events = fields.List(fields.String(validate=validate.OneOf(EVENT_TYPES)), load_default=list, **_EVENTS)
    secret = fields.String(load_default=None, **_SECRET)
    active = fields.Boolean(load_default=True)


class SubscriptionUpdateSchema(Schema):
    name = fields.String(validate=_NAME)
    url = fields.Url(**_URL)
    events = fields.List(fields.String(validate=validate.OneOf(EVENT_TYPES)), **_EVENTS)
    secret = fields.String(**_SECRET)
    rotate_secret = fields.Boolean(load_default=False, metadata={
        "description": "generate a new secret (shown once in the answer); the old one stops at once"})
    active = fields.Boolean(metadata={"description": "false cancels the pending deliveries (as DELETE does)"})


@dataclass
class SubscriptionOut:
    subscription: WebhookSubscription
    secret: str | None = None  # only when it was set or generated by this request: shown once
    cancelled: int = 0


def _check_admin(ctx: ServiceContext) -> None:
    if ctx.user is not None and ctx.user.role not in ADMIN_ROLES:
        raise Forbidden(msg("%(username)s (%(role)s) may not manage webhooks", username=ctx.user.username,
                            role=ctx.user.role))


def _bounded_id(value, missing: str) -> int:
    """``value`` if it can be an id; else NotFound(``missing``)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_ID:
        raise NotFound(missing)
    return value


def get_subscription(session: Session, subscription_id: int) -> WebhookSubscription:
    missing = msg("no webhook subscription %(id)s", id=subscription_id)
    row = session.get(WebhookSubscription, _bounded_id(subscription_id, missing))
    if row is None:
        raise NotFound(missing)
    return row


def _unique_name(session: Session, name: str, own_id: int | None = None) -> None:
    q = select(WebhookSubscription.id).where(WebhookSubscription.name == name)
    if own_id is not None:
        q = q.where(WebhookSubscription.id != own_id)
    if session.scalar(q) is not None:
        raise Conflict(msg("a webhook subscription named '%(name)s' already exists", name=name),
                       field_errors={"name": [msg("already taken")]})


def _events(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))  # without repeats, in the given order


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def create_subscription(ctx: ServiceContext, data: Mapping) -> SubscriptionOut:
    """A new subscriber; its secret (given, or generated) is in the answer, and never shown again."""
    _check_admin(ctx)
    values = _load(SubscriptionCreateSchema(), data)
    name = values["name"].strip()
    _unique_name(ctx.session, name)
    secret = values["secret"] or new_secret()
    now = ctx.clock.now()
    row = WebhookSubscription(name=name, url=values["url"], secret=secret, events=_events(values["events"]),
                              active=values["active"], created_at=now, created_by=ctx.actor)
    ctx.session.add(row)
    ctx.session.flush()
    record_audit(ctx.session, at=now, actor=ctx.actor, action="webhook.created", subject=f"webhook:{row.id}",
                 new={"name": name, "url": row.url, "events": row.events, "active": row.active})
    return SubscriptionOut(row, secret)


def update_subscription(ctx: ServiceContext, subscription_id: int, data: Mapping) -> SubscriptionOut:
    """Change name, URL, events, secret or active; ``rotate_secret`` generates a new secret."""
    _check_admin(ctx)
    row = get_subscription(ctx.session, subscription_id)
    values = _load(SubscriptionUpdateSchema(), data)
    if values.get("rotate_secret") and values.get("secret"):
        raise ValidationFailed(msg("give a new secret or rotate_secret, not both"),
                               field_errors={"rotate_secret": [msg("not with secret")]})
    old = {"name": row.name, "url": row.url, "events": row.events, "active": row.active}
    if "name" in values:
        name = values["name"].strip()
        _unique_name(ctx.session, name, row.id)
        row.name = name
    if "url" in values:
        row.url = values["url"]
    if "events" in values:
        row.events = _events(values["events"])
    secret = None
    if values.get("rotate_secret"):
        secret = new_secret()
    elif values.get("secret"):
        secret = values["secret"]
    if secret is not None:
        row.secret = secret
    cancelled = 0
    now = ctx.clock.now()
    if "active" in values and values["active"] != row.active:
        row.active = values["active"]
        if not row.active:
            cancelled = _cancel_pending(ctx.session, row.id, now)
    new = {"name": row.name, "url": row.url, "events": row.events, "active": row.active}
    ctx.session.flush()
    if new == old and secret is None:
        return SubscriptionOut(row)
    record_audit(ctx.session, at=now, actor=ctx.actor, action="webhook.updated", subject=f"webhook:{row.id}",
                 old=old, new=new, detail={"secret_changed": secret is not None, "cancelled": cancelled})
    return SubscriptionOut(row, secret, cancelled)


def deactivate_subscription(ctx: ServiceContext, subscription_id: int) -> SubscriptionOut:
    """Stop a subscriber: no new events are queued and its pending deliveries are cancelled (idempotent)."""
    _check_admin(ctx)
    row = get_subscription(ctx.session, subscription_id)
    cancelled = 0
    if row.active:
        now = ctx.clock.now()
        row.active = False
        cancelled = _cancel_pending(ctx.session, row.id, now)
        ctx.session.flush()
        record_audit(ctx.session, at=now, actor=ctx.actor, action="webhook.deactivated",
                     subject=f"webhook:{row.id}", old={"active": True}, new={"active": False},
                     detail={"cancelled": cancelled})
    return SubscriptionOut(row, None, cancelled)


def _cancel_pending(session: Session, subscription_id: int, now: datetime) -> int:
    # an attempt in flight is cancelled too: its deliverer's claim no longer matches, so its answer is dropped
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.subscription_id == subscription_id, WebhookDelivery.state == "pending")
        .values(state="dead", next_attempt_at=None, last_error="cancelled: subscription deactivated")
        .execution_options(synchronize_session=False))
    return result.rowcount or 0


def list_subscriptions(session: Session, *, active: bool | None = None, limit: int = 50,
                       offset: int = 0) -> tuple[int, list[WebhookSubscription]]:
    q = select(WebhookSubscription)
    if active is not None:
        q = q.where(WebhookSubscription.active.is_(active))
    total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = list(session.scalars(q.order_by(WebhookSubscription.id).limit(limit).offset(offset)))
    return total, rows


def delivery_counts(session: Session, subscription_ids: list[int]) -> dict[int, dict[str, int]]:
    """Pending and dead deliveries per subscription (what an administrator should look at)."""
    out = {sid: {"pending": 0, "dead": 0} for sid in subscription_ids}
    if subscription_ids:
        for sid, state, n in session.execute(
                select(WebhookDelivery.subscription_id, WebhookDelivery.state, func.count())
                .where(WebhookDelivery.state.in_(("pending", "dead")),
                       WebhookDelivery.subscription_id.in_(subscription_ids))
                .group_by(WebhookDelivery.subscription_id, WebhookDelivery.state)):
            out[sid][state] = n
    return out


def ping(ctx: ServiceContext, subscription_id: int) -> WebhookDelivery:
    """Queue a ``ping`` event to one subscriber (sent by the next sweep, like any other)."""
    _check_admin(ctx)
    row = get_subscription(ctx.session, subscription_id)
    if not row.active:
        raise Conflict(msg("webhook subscription %(id)s (%(name)s) is inactive; activate it first", id=row.id,
                           name=row.name))
    now = ctx.clock.now()
    event = OutboxEvent(event_type=PING, subject="", occurred_at=now,
                        payload={"type": PING, "occurred_at": now.isoformat(), "actor": ctx.actor, "call": None,
                                 "data": {"subscription": row.name}})
    ctx.session.add(event)
    ctx.session.flush()
    delivery = WebhookDelivery(subscription_id=row.id, event_id=event.id, state="pending", attempts=0,
                               next_attempt_at=now)
    ctx.session.add(delivery)
    ctx.session.flush()
    record_audit(ctx.session, at=now, actor=ctx.actor, action="webhook.ping", subject=f"webhook:{row.id}",
                 detail={"delivery": delivery.id})
    return delivery


# ---- the delivery log --------------------------------------------------------------------------
def get_delivery(session: Session, delivery_id: int) -> WebhookDelivery:
    missing = msg("no webhook delivery %(id)s", id=delivery_id)
    row = session.get(WebhookDelivery, _bounded_id(delivery_id, missing))
    if row is None:
        raise NotFound(missing)
    return row


def delivery_attempts(session: Session, delivery_id: int) -> list[WebhookAttempt]:
    """Every attempt at one delivery, oldest first."""
    return list(session.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id)
                                .order_by(WebhookAttempt.id)))


def list_deliveries(session: Session, *, subscription: int | None = None, state: str | None = None,
                    event: str | None = None, call: str | None = None, limit: int = 50,
                    offset: int = 0) -> tuple[int, list[WebhookDelivery]]:
    """The delivery log, newest first, optionally of one subscription, state, event type or call."""
    q = select(WebhookDelivery).join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
    if subscription is not None:
        q = q.where(WebhookDelivery.subscription_id == subscription)
    if state is not None:
        q = q.where(WebhookDelivery.state == state)
    if event is not None:
        q = q.where(OutboxEvent.event_type == event)
    if call is not None:
        q = q.where(OutboxEvent.subject == call)
    total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = list(session.scalars(q.order_by(WebhookDelivery.id.desc()).limit(limit).offset(offset)))
    return total, rows


def redeliver(ctx: ServiceContext, delivery_id: int) -> WebhookDelivery:
    """Send a dead or delivered delivery again: pending now, with a fresh round of attempts."""
    _check_admin(ctx)
    row = get_delivery(ctx.session, delivery_id)
    if row.state == "pending":
        raise Conflict(msg("webhook delivery %(id)s is already pending (attempt %(attempt)s due %(due)s)", id=row.id,
                           attempt=row.attempts + 1,
                           due=row.next_attempt_at.isoformat() if row.next_attempt_at else "now"))
    sub = row.subscription
    if not sub.active:
        raise Conflict(msg("webhook subscription %(id)s (%(name)s) is inactive; activate it first", id=sub.id,
                           name=sub.name))
    now = ctx.clock.now()
    old = {"state": row.state, "attempts": row.attempts}
    row.state, row.attempts, row.next_attempt_at, row.delivered_at = "pending", 0, now, None
    ctx.session.flush()
    record_audit(ctx.session, at=now, actor=ctx.actor, action="webhook.redelivered", subject=f"webhook:{sub.id}",
                 old=old, new={"state": "pending"}, detail={"delivery": row.id})
    return row


# ---- sending ------------------------------------------------------------------------------------
Send = Callable[[str, bytes, Mapping[str, str], float], tuple[int, str]]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # a 3xx is an answer, not a hop
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


def _snippet(response) -> str:
    try:
        return response.read(500).decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - the status is what counts
        return ""


def http_send(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> tuple[int, str]:
    """POST ``body``; returns (status, the start of the answer's body).  Network failures raise."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, _snippet(response)
    except urllib.error.HTTPError as exc:  # any status urllib does not call success, 3xx included
        with exc:
            return exc.code, _snippet(exc)


@dataclass(frozen=True)
class _Claim:
    delivery_id: int
    attempt: int  # the attempt counter after claiming: our claim holds while it is unchanged
    subscription_id: int
    url: str
    secret: str
    event_type: str
    body: bytes
    claimed_at: datetime


def deliver_due(session_factory: Callable[[], Session], clock: Clock, send: Send | None = None, *,
                limit: int | None = None, max_attempts: int = MAX_ATTEMPTS, timeout: float = TIMEOUT_SECONDS,
                lease: timedelta = LEASE) -> int:
    """Send every due delivery (``next_attempt_at <= now``); returns how many were delivered (2xx).

    ``limit`` caps the attempts made in this run; ``send`` replaces the HTTP POST (tests).
    Each attempt is: claim (commit), send (no transaction open), record the answer.
    """
    send = send or http_send
    delivered = attempts = 0
    lost: set[int] = set()  # claims another deliverer won in this run
    failed: set[int] = set()  # subscriptions that failed in this run: not tried again until the next
    while limit is None or attempts < limit:
        claim = _claim_next(session_factory, clock, lease, max_attempts, lost, failed)
        if claim is None:
            break
        if isinstance(claim, int):
            lost.add(claim)
            continue
        attempts += 1
        started = time.monotonic()
        status, error = _attempt(claim, send, timeout)
        took_ms = (time.monotonic() - started) * 1000
        ok = status is not None and 200 <= status < 300
        _record(session_factory, clock, claim, ok, status, error, max_attempts, took_ms)
        if ok:
            delivered += 1
        else:
            failed.add(claim.subscription_id)
    return delivered


def _claim_next(session_factory, clock: Clock, lease: timedelta, max_attempts: int, lost: set[int],
                failed: set[int]) -> _Claim | int | None:
    """Claim the earliest due delivery: a claim, the id of one lost to another deliverer, or None."""
    with session_factory() as session:
        now = clock.now()
        d, e, s = WebhookDelivery, OutboxEvent, WebhookSubscription
        d2, e2 = aliased(WebhookDelivery), aliased(OutboxEvent)
        # an earlier event about the same call still pending for the same subscriber goes first
        earlier = (select(d2.id).join(e2, e2.id == d2.event_id)
                   .where(e2.subject == e.subject, d2.subscription_id == d.subscription_id,
                          d2.state == "pending", d2.event_id < d.event_id))
        q = (select(d.id, d.attempts).join(e, e.id == d.event_id).join(s, s.id == d.subscription_id)
             .where(d.state == "pending", d.next_attempt_at <= now, s.active.is_(True), ~earlier.exists()))
        if lost:
            q = q.where(d.id.notin_(lost))
        if failed:
            q = q.where(d.subscription_id.notin_(failed))
        q = q.order_by(d.next_attempt_at, d.id).limit(1)
        if session.bind.dialect.name == "postgresql":
            q = q.with_for_update(of=d, skip_locked=True)
        row = session.execute(q).first()
        if row is None:
            return None
        delivery_id, attempts = row
        claimed = {"attempts": attempts + 1, "next_attempt_at": now + lease, "last_attempt_at": now}
        if attempts >= max_attempts:  # earlier attempts never came back (the deliverer stopped): give up
            claimed = {"state": "dead", "next_attempt_at": None,
                       "last_error": f"gave up: {attempts} attempts were interrupted before an answer"}
        result = session.execute(
            update(d).where(d.id == delivery_id, d.state == "pending", d.attempts == attempts)
            .values(**claimed).execution_options(synchronize_session=False))
        if result.rowcount != 1:
            session.rollback()
            return delivery_id
        if attempts >= max_attempts:
            session.commit()
            return delivery_id
        delivery = session.get(d, delivery_id)
        sub, event = delivery.subscription, delivery.event
        claim = _Claim(delivery_id, attempts + 1, sub.id, sub.url, sub.secret, event.event_type,
                       encode_body(event_body(event)), now)
        session.commit()
        return claim


def _attempt(claim: _Claim, send: Send, timeout: float) -> tuple[int | None, str | None]:
    """Send one attempt: (status, error text); status None when there was no HTTP answer."""
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               "X-Huying-Event": claim.event_type, "X-Huying-Delivery": str(claim.delivery_id),
               "X-Huying-Timestamp": str(timestamp), "X-Huying-Signature": sign(claim.secret, timestamp, claim.body)}
    try:
        status, text = send(claim.url, claim.body, headers, timeout)
    except Exception as exc:  # noqa: BLE001 - timeouts, refused connections, bad hosts: retried later
        reason = getattr(exc, "reason", None) or exc
        return None, f"{type(exc).__name__}: {reason}"[:2000]
    if 200 <= status < 300:
        return status, None
    return status, f"HTTP {status}: {(text or '').strip()}"[:2000]


def _record(session_factory, clock: Clock, claim: _Claim, ok: bool, status: int | None, error: str | None,
            max_attempts: int, took_ms: float = 0.0) -> None:
    with session_factory() as session:
        now = clock.now()
        if ok:
            values = {"state": "delivered", "delivered_at": now, "next_attempt_at": None, "last_error": None}
            outcome = "delivered"
        elif claim.attempt >= max_attempts:
            values = {"state": "dead", "next_attempt_at": None, "last_error": error}
            outcome = "dead"
        else:
            values = {"next_attempt_at": now + retry_delay(claim.attempt), "last_error": error}
            outcome = "retry"
        result = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == claim.delivery_id, WebhookDelivery.state == "pending",
                   WebhookDelivery.attempts == claim.attempt)
            .values(last_status=status, **values).execution_options(synchronize_session=False))
        # every attempt is logged, also one whose answer came after its claim had lapsed
        session.add(WebhookAttempt(delivery_id=claim.delivery_id, attempt=claim.attempt, sent_at=claim.claimed_at,
                                   answered_at=now, duration_ms=round(took_ms, 1), status=status, error=error,
                                   outcome=outcome if result.rowcount == 1 else "late"))
        session.commit()
        if result.rowcount != 1:  # cancelled, or our lease ran out and another deliverer took over
            log.warning("webhook delivery %s: the answer to attempt %s came after the claim was gone",
                        claim.delivery_id, claim.attempt)
        elif not ok:
            log.info("webhook delivery %s to %s failed (attempt %s): %s", claim.delivery_id, claim.url,
                     claim.attempt, error)
