"""Engine tables: process definitions, instances, work items, the audit log, the virtual clock."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from . import writes
from .db import Base, UTCDateTime
from .ids import IdSequence, use_reserved_ids  # noqa: F401 - IdSequence: importing the models registers its table


class ProcessDefinition(Base):
    """One deployed version of a process: its files (BPMN + DMN), their hash, the serialized spec."""

    __tablename__ = "engine_process_definition"
    __table_args__ = (UniqueConstraint("process_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    process_id: Mapped[str] = mapped_column(String(100), index=True)
    version: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    # large and needed only when the spec cache is cold: loaded on first access, not with every instance
    files: Mapped[dict] = mapped_column(JSON, deferred=True)  # {file name: XML text}
    spec_json: Mapped[str] = mapped_column(Text, deferred=True)  # serialized process + subprocess specs
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deployed_by: Mapped[str] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(String(500), default="")


class ProcessInstance(Base):
    """A running (or finished) process; ``state`` is the compressed (zstd) workflow state without the spec."""

    __tablename__ = "engine_process_instance"
    __table_args__ = (Index("ix_engine_process_instance_wakeup", "next_wakeup_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("engine_process_definition.id"), index=True)
    business_key: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default="running")  # running, completed, error
    end_event: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[bytes] = mapped_column(LargeBinary)
    lock_version: Mapped[int] = mapped_column(Integer, default=1)
    next_wakeup_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    definition: Mapped[ProcessDefinition] = relationship(lazy="joined")

    # Optimistic concurrency: every UPDATE carries "WHERE lock_version = :seen";
    # zero rows matched means someone else committed first.
    __mapper_args__ = {"version_id_col": lock_version}


class WorkItem(Base):
    """A human task, mirrored out of the workflow state so queues are plain indexed queries."""

    __tablename__ = "engine_work_item"
    __table_args__ = (
        Index("ix_engine_work_item_queue", "owner_unit", "state", "created_at"),
        # my work queue: a unit's open items, most urgent deadline first (NULLS LAST, PostgreSQL's default)
        # (PostgreSQL: lane rides along, so the queue's count is an index-only scan)
        Index("ix_engine_work_item_queue_due", "owner_unit", "state", "due_at", "created_at", "id",
              postgresql_include=["lane"]),
        Index("ix_engine_work_item_instance", "instance_id", "state"),
        Index("ix_engine_work_item_due", "state", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("engine_process_instance.id"))
    task_id: Mapped[str] = mapped_column(String(36), unique=True)
    task_name: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(200))
    lane: Mapped[str | None] = mapped_column(String(50))
    owner_unit: Mapped[str | None] = mapped_column(String(64))
    via: Mapped[str | None] = mapped_column(String(100))  # the call activity it runs under, if any
    properties: Mapped[dict] = mapped_column(JSON)  # the task's spiffworkflow properties
    context: Mapped[dict] = mapped_column(JSON)  # small, display-only task data (e.g. dispute reason)
    state: Mapped[str] = mapped_column(String(16), default="open")  # open, completed, cancelled
    assignee: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(100))
    action: Mapped[str | None] = mapped_column(String(50))
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    instance: Mapped[ProcessInstance] = relationship()


class AuditEvent(Base):
    """Append-only log of every action: who, what, when, on what, old -> new."""

    __tablename__ = "engine_audit_event"
    __table_args__ = (Index("ix_engine_audit_event_subject", "subject", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(64))  # business key (call number)
    instance_id: Mapped[int | None] = mapped_column(Integer)
    work_item_id: Mapped[int | None] = mapped_column(Integer)
    old: Mapped[dict | None] = mapped_column(JSON)
    new: Mapped[dict | None] = mapped_column(JSON)
    detail: Mapped[dict | None] = mapped_column(JSON)


# The audit log is append-only in the database itself, not only by convention: an UPDATE or DELETE of a row
# (from this code, a console, another application) is refused.  Its own migration (0010) runs the same.
APPEND_ONLY_MESSAGE = "engine_audit_event is append-only: its rows cannot be changed or deleted"
APPEND_ONLY_DDL = {
    "sqlite": [f"CREATE TRIGGER engine_audit_event_no_{op.lower()} BEFORE {op} ON engine_audit_event "
               f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END" for op in ("UPDATE", "DELETE")],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION engine_audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}' USING ERRCODE = 'insufficient_privilege'; END $$",
        "CREATE TRIGGER engine_audit_event_append_only BEFORE UPDATE OR DELETE ON engine_audit_event "
        "FOR EACH ROW EXECUTE FUNCTION engine_audit_event_append_only()",
        "CREATE TRIGGER engine_audit_event_no_truncate BEFORE TRUNCATE ON engine_audit_event "
        "FOR EACH STATEMENT EXECUTE FUNCTION engine_audit_event_append_only()",
    ],
}


@event.listens_for(AuditEvent.__table__, "after_create")
def _append_only(_table, connection, **_kwargs):
    for statement in APPEND_ONLY_DDL.get(connection.dialect.name, ()):
        connection.exec_driver_sql(statement)


class ClockState(Base):
    """The shared virtual clock (one row), used when HUYING_CLOCK=virtual."""

    __tablename__ = "engine_clock"

    id: Mapped[int] = mapped_column(primary_key=True)
    now: Mapped[datetime] = mapped_column(UTCDateTime)


class SlaPolicy(Base):
    """One version of the SLA policy: rules matching stage x category/class x urgency to targets."""

    __tablename__ = "engine_sla_policy"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    rules: Mapped[list] = mapped_column(JSON)
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deployed_by: Mapped[str] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(String(500), default="")


class SlaClock(Base):
    """One SLA clock per (instance, stage, responsible unit, round).

    ``next_fire_at`` is the earliest pending moment (warning, breach, overdue or
    a retry after an incident) of a running clock and NULL otherwise: the
    scheduler's sweep is an index range scan on it.
    """

    __tablename__ = "engine_sla_clock"
    __table_args__ = (
        Index("ix_engine_sla_clock_next_fire", "next_fire_at", "id"),  # the sweep: ORDER BY both, LIMIT 1
        Index("ix_engine_sla_clock_owner", "instance_id", "stage", "unit", "state"),
        Index("ix_engine_sla_clock_unit_due", "unit", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("engine_process_instance.id"))
    subject: Mapped[str] = mapped_column(String(64), index=True)
    stage: Mapped[str] = mapped_column(String(50))
    unit: Mapped[str] = mapped_column(String(64))
    work_item_id: Mapped[int | None] = mapped_column(ForeignKey("engine_work_item.id"), index=True)
    round: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(16), default="running")  # running, paused, stopped
    outcome: Mapped[str | None] = mapped_column(String(16))  # met, late, cancelled
    target_kind: Mapped[str] = mapped_column(String(16))
    target_amount: Mapped[float]
    warn_ratio: Mapped[float]
    overdue_working_days: Mapped[int] = mapped_column(Integer, default=5)
    policy_version: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    shift_seconds: Mapped[float] = mapped_column(default=0.0)  # paused time + approved extensions
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_seconds: Mapped[float] = mapped_column(default=0.0)
    extension_days: Mapped[int] = mapped_column(Integer, default=0)
    warn_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    overdue_at: Mapped[datetime] = mapped_column(UTCDateTime)
    warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    overdue_fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    assumed_calendar: Mapped[bool] = mapped_column(default=False)  # deadline rests on assumed workdays
    lock_version: Mapped[int] = mapped_column(Integer, default=1)

    work_item: Mapped[WorkItem | None] = relationship()

    __mapper_args__ = {"version_id_col": lock_version}


class SlaEvent(Base):
    """预警 (warning), 催办 (urge) and 督办 (supervise) events, from the scheduler or a supervisor."""

    __tablename__ = "engine_sla_event"
    __table_args__ = (Index("ix_engine_sla_event_unit_at", "unit", "occurred_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clock_id: Mapped[int | None] = mapped_column(ForeignKey("engine_sla_clock.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # warning, urge, supervise
    subject: Mapped[str] = mapped_column(String(64), index=True)
    stage: Mapped[str | None] = mapped_column(String(50))
    unit: Mapped[str | None] = mapped_column(String(64))
    scheduled_for: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when it was due to fire
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)  # wall time it was written (lateness)
    actor: Mapped[str] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(String(1000), default="")


class Incident(Base):
    """A scheduled item that failed: the error, and when it will be retried."""

    __tablename__ = "engine_incident"

    id: Mapped[int] = mapped_column(primary_key=True)
    clock_id: Mapped[int | None] = mapped_column(ForeignKey("engine_sla_clock.id"), index=True)
    subject: Mapped[str | None] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    error: Mapped[str] = mapped_column(Text)
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CalendarOverride(Base):
    """An administrator's ruling on one day: workday or not (wins over the package and the file)."""

    __tablename__ = "engine_calendar_override"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    workday: Mapped[bool]
    note: Mapped[str] = mapped_column(String(200), default="")
    set_by: Mapped[str] = mapped_column(String(100))
    set_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CalendarRevision(Base):
    """Bumped whenever the overrides change, so every process reloads its cached calendar."""

    __tablename__ = "engine_calendar_revision"

    id: Mapped[int] = mapped_column(primary_key=True)
    revision: Mapped[int] = mapped_column(Integer, default=0)


# engine.writes writes a step's instance, work items and clocks with plain statements (see there)
# a new instance's id is taken before its step runs (engine.ids), so its row goes with the step's batch
writes.register(ProcessInstance, foreign={"definition": ("definition_id", "id")}, reserved_ids=True)
use_reserved_ids(ProcessInstance)
writes.register(WorkItem, foreign={"instance": ("instance_id", "id")}, key=("task_id",), lookup="task_id")
# a clock per (stage, unit) and round of an instance: a step never opens two alike
writes.register(SlaClock, foreign={"work_item": ("work_item_id", "id")}, key=("instance_id", "stage", "unit", "round"))
