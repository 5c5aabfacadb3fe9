"""The append-only audit log."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from .models import AuditEvent

_INSERT = insert(AuditEvent.__table__)


def record_audit(session: Session, *, at: datetime, actor: str, action: str, subject: str | None = None,
                 instance_id: int | None = None, work_item_id: int | None = None,
                 old: dict | None = None, new: dict | None = None, detail: dict | None = None) -> None:
    """Append one audit event in the caller's transaction (never updated).

    A plain INSERT, not an ORM object: nothing reads an audit row back in the
    transaction that writes it, and the unit of work's bookkeeping for one
    row cost more than the row (a third of a step's flush).
    """
    session.execute(_INSERT, [{"occurred_at": at, "actor": actor, "action": action, "subject": subject,
                               "instance_id": instance_id, "work_item_id": work_item_id, "old": old, "new": new,
                               "detail": detail}])


def audit_trail(session: Session, subject: str) -> list[AuditEvent]:
    """Every audit event about one subject (call number), oldest first."""
    return list(session.scalars(select(AuditEvent).where(AuditEvent.subject == subject).order_by(AuditEvent.id)))
