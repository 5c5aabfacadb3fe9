"""The append-only audit log, and rows written at the end of a step rather than one statement each."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Table, event, select
from sqlalchemy.orm import Session

from .models import AuditEvent
from .writes import Batch, insert_plain_rows

_DEFERRED = "huying.deferred_rows"  # session.info key: {table: [row, ...]} not written yet
_UNTIL_COMMIT = "huying.deferred_until_commit"  # session.info key: set by defer_until_commit


def defer_insert(session: Session, table: Table, row: dict) -> None:
    """Append a row that nothing reads back before the step is written (audit events, SLA events).

    The rows go out as one multi-row INSERT per table just before the
    transaction commits (or when a reader calls :func:`write_deferred`): a
    scheduler batch of 32 events costs two statements, not 64 round trips.
    """
    session.info.setdefault(_DEFERRED, {}).setdefault(table, []).append(row)


def write_deferred(session: Session, batch: Batch | None = None) -> None:
    """Write the rows :func:`defer_insert` collected (readers of those tables call this first).

    With ``batch``, the rows join that batch's statements (a step sends them with its own rows) and
    go out when it runs; the caller runs it.
    """
    if batch is not None and session.info.get(_UNTIL_COMMIT):
        return  # a transaction of many steps: all their rows at its commit
    pending = session.info.pop(_DEFERRED, None)
    if not pending:
        return
    own = batch is None
    batch = batch or Batch.of(session)  # every table's rows in one round trip on PostgreSQL
    for table, rows in pending.items():
        insert_plain_rows(batch, table, rows)
    if own:
        batch.run()


@event.listens_for(Session, "before_commit")
def _write_before_commit(session):
    write_deferred(session)


def defer_until_commit(session: Session) -> None:
    """This transaction runs many steps (the scheduler's batch): their audit and SLA event rows wait
    for the commit, one multi-row INSERT per table, instead of going with each step's writes."""
    session.info[_UNTIL_COMMIT] = True


@event.listens_for(Session, "after_commit")
def _end_of_transaction(session):
    session.info.pop(_UNTIL_COMMIT, None)


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back_rows(session):
    session.info.pop(_DEFERRED, None)
    session.info.pop(_UNTIL_COMMIT, None)


def record_audit(session: Session, *, at: datetime, actor: str, action: str, subject: str | None = None,
                 instance_id: int | None = None, work_item_id: int | None = None,
                 old: dict | None = None, new: dict | None = None, detail: dict | None = None) -> None:
    """Append one audit event in the caller's transaction (never updated).

    A plain row, not an ORM object (the unit of work's bookkeeping for one row
    cost more than the row), written with the step (:func:`defer_insert`).
    """
    defer_insert(session, AuditEvent.__table__, {
        "occurred_at": at, "actor": actor, "action": action, "subject": subject, "instance_id": instance_id,
        "work_item_id": work_item_id, "old": old, "new": new, "detail": detail})


def audit_trail(session: Session, subject: str) -> list[AuditEvent]:
    """Every audit event about one subject (call number), oldest first."""
    write_deferred(session)
    return list(session.scalars(select(AuditEvent).where(AuditEvent.subject == subject).order_by(AuditEvent.id)))
