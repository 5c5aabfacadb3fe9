"""Domain tables: the org tree, users, categories and calls (tickets)."""
from __future__ import annotations

from datetime import datetime
from functools import cache

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    insert,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from engine import ids, writes
from engine.db import Base, UTCDateTime

UNIT_KINDS = ("district", "street", "community", "department")
ROLES = ("grid_worker", "community_staff", "street_dispatcher", "department_staff", "district_dispatcher",
         "supervisor", "admin", "hotline")
# Which unit kind each role belongs to.
ROLE_UNIT_KIND = {"grid_worker": "community", "community_staff": "community", "street_dispatcher": "street",
                  "department_staff": "department", "district_dispatcher": "district",
                  "supervisor": "district", "admin": "district", "hotline": "district"}
URGENCIES = ("normal", "urgent")


class OrgUnit(Base):
    __tablename__ = "org_unit"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100), default="")
    kind: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    parent: Mapped[OrgUnit | None] = relationship(remote_side=[id], lazy="joined", join_depth=2)


class User(Base):
    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    unit_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    unit: Mapped[OrgUnit] = relationship(lazy="joined")


class OrgRevision(Base):
    """Bumped (in the same transaction) whenever a user or an org unit changes, so that every process
    reads them afresh instead of its cached copy (see :mod:`workflows.principals`)."""

    __tablename__ = "org_revision"

    id: Mapped[int] = mapped_column(primary_key=True)
    revision: Mapped[int] = mapped_column(Integer, default=0)


ORG_CHANGED = "huying.org_changed"  # session.info: this transaction changed users or units (bumped the revision)


@cache
def _bump_statement(dialect_name: str):
    """``INSERT ... ON CONFLICT DO UPDATE``: one statement whether the row exists yet or not."""
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert
    return upsert(OrgRevision).values(id=1, revision=1).on_conflict_do_update(
        index_elements=[OrgRevision.id], set_={"revision": OrgRevision.revision + 1})


def bump_org_revision(session: Session) -> None:
    """Make every process read users and units afresh (from the commit of this transaction on)."""
    name = session.get_bind().dialect.name
    if name in ("sqlite", "postgresql"):
        session.execute(_bump_statement(name))
    else:  # another database: read, then write
        row = session.get(OrgRevision, 1)
        if row is None:
            session.execute(insert(OrgRevision).values(id=1, revision=1))
        else:
            row.revision += 1
    session.info[ORG_CHANGED] = True


@event.listens_for(Session, "before_flush")
def _bump_on_change(session, _flush_context, _instances):
    """A flush that writes a user or an org unit bumps the org revision, in the same transaction."""
    for group in (session.new, session.dirty, session.deleted):
        if any(isinstance(obj, (User, OrgUnit)) for obj in group):
            bump_org_revision(session)
            return


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _end_of_transaction(session):
    session.info.pop(ORG_CHANGED, None)


class Category(Base):
    __tablename__ = "category"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Call(Base):
    """A citizen call (呼叫, the ticket).  Its process state lives in the engine instance."""

    __tablename__ = "call"
    __table_args__ = (
        Index("ix_call_street_status", "street_code", "status", "created_at"),
        Index("ix_call_community_status", "community_code", "status"),
        Index("ix_call_category_created", "category_code", "created_at"),
        # one call per process instance (child tickets have none): unique, so the lookup every action
        # makes is one index probe whatever the planner's statistics say
        Index("ix_call_instance_id", "instance_id", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str | None] = mapped_column(String(32), unique=True)
    category_code: Mapped[str] = mapped_column(ForeignKey("category.code"))
    description: Mapped[str] = mapped_column(Text)
    location: Mapped[str] = mapped_column(String(200))
    latitude: Mapped[float | None]
    longitude: Mapped[float | None]
    urgency: Mapped[str] = mapped_column(String(16))
    photos: Mapped[list] = mapped_column(JSON, default=list)
    reporter_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    community_code: Mapped[str] = mapped_column(String(64))
    street_code: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    level: Mapped[str] = mapped_column(String(16))
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("engine_process_instance.id"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("call.id"), index=True)
    department_code: Mapped[str | None] = mapped_column(String(64))  # child tickets: the department
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("call.id"))
    handling_level: Mapped[str] = mapped_column(String(16), default="street")  # routing's first level
    suggested_lead: Mapped[str | None] = mapped_column(String(64))
    suggested_assists: Mapped[list] = mapped_column(JSON, default=list)
    sla_class: Mapped[str] = mapped_column(String(16), default="standard")
    problem_ticket: Mapped[bool] = mapped_column(Boolean, default=False)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    rework_count: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[str | None] = mapped_column(Text)
    satisfaction: Mapped[str | None] = mapped_column(String(32))
    first_contact_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    reporter: Mapped[User] = relationship()
    category: Mapped[Category] = relationship()
    parent: Mapped[Call | None] = relationship(remote_side=[id], foreign_keys=[parent_id])
    merged_into: Mapped[Call | None] = relationship(remote_side=[id], foreign_keys=[merged_into_id])


# ---- the HTTP API's own records ------------------------------------------------------------------

class ApiToken(Base):
    """A sign-in: a bearer token for API clients or the browser session's token; only its hash is kept."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the secret
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # api, session
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    client: Mapped[str] = mapped_column(String(200), default="")

    user: Mapped[User] = relationship(lazy="joined")


class ApiKey(Base):
    """An integrator's key (Open311 ``api_key``): files calls as its user; only the hash is kept."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))  # first characters, to recognise a key in lists
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(lazy="joined")


class IdempotencyKey(Base):
    """``Idempotency-Key`` of a filing: a retry with the same key gets the same call back."""

    __tablename__ = "idempotency_key"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    call_id: Mapped[int | None] = mapped_column(ForeignKey("call.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Attachment(Base):
    """A photo or evidence file: bytes on disk (content-addressed), facts here."""

    __tablename__ = "attachment"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int | None] = mapped_column(ForeignKey("call.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(String(16), default="photo")  # photo, evidence
    uploaded_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookSubscription(Base):
    """An admin-managed receiver of signed event notifications."""

    __tablename__ = "webhook_subscription"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    url: Mapped[str] = mapped_column(String(500))
    secret: Mapped[str] = mapped_column(String(200))  # HMAC-SHA256 key shared with the receiver
    events: Mapped[list] = mapped_column(JSON, default=list)  # event types; empty = all
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))


class OutboxEvent(Base):
    """A domain event written in the transaction that caused it (the durable outbox)."""

    __tablename__ = "outbox_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_type: Mapped[str] = mapped_column(String(50))
    subject: Mapped[str] = mapped_column(String(64), index=True)
    payload: Mapped[dict] = mapped_column(JSON)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """One event to one subscriber: attempts, backoff and the outcome (the delivery log)."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (Index("ix_webhook_delivery_due", "state", "next_attempt_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscription.id"), index=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("outbox_event.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending, delivered, dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    subscription: Mapped[WebhookSubscription] = relationship()
    event: Mapped[OutboxEvent] = relationship()


class WebhookAttempt(Base):
    """Every attempt at a delivery, with its answer: the delivery log an integrator debugs with."""

    __tablename__ = "webhook_attempt"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_delivery.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)  # the delivery's counter (it restarts on a redelivery)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_ms: Mapped[float] = mapped_column(Float)
    status: Mapped[int | None] = mapped_column(Integer)  # HTTP status; none when nothing answered
    error: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))  # delivered, retry, dead, late (the claim had lapsed)


# a step writes its call's changed columns with a plain UPDATE (engine.writes); a new call whose id was taken
# beforehand (engine.ids: a filing) goes with the step's batch, any other through the ORM
writes.register(Call, foreign={"reporter": ("reporter_id", "id")}, reserved_ids=True)
ids.use_reserved_ids(Call)
