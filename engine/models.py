"""Engine tables: process definitions, instances, work items, the audit log, the virtual clock."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .db import Base, UTCDateTime


class ProcessDefinition(Base):
    """One deployed version of a process: its files (BPMN + DMN), their hash, the serialized spec."""

    __tablename__ = "engine_process_definition"
    __table_args__ = (UniqueConstraint("process_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    process_id: Mapped[str] = mapped_column(String(100), index=True)
    version: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    files: Mapped[dict] = mapped_column(JSON)  # {file name: XML text}
    spec_json: Mapped[str] = mapped_column(Text)  # serialized process + subprocess specs
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deployed_by: Mapped[str] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(String(500), default="")


class ProcessInstance(Base):
    """A running (or finished) process; ``state`` is the gzip'd workflow state without the spec."""

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


class ClockState(Base):
    """The shared virtual clock (one row), used when HUYING_CLOCK=virtual."""

    __tablename__ = "engine_clock"

    id: Mapped[int] = mapped_column(primary_key=True)
    now: Mapped[datetime] = mapped_column(UTCDateTime)
