"""The append-only audit log."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import AuditEvent


def record_audit(session: Session, *, at: datetime, actor: str, action: str, subject: str | None = None,
                 instance_id: int | None = None, work_item_id: int | None = None,
                 old: dict | None = None, new: dict | None = None, detail: dict | None = None) -> AuditEvent:
    """Append one audit event (flushed with the rest of the transaction, never updated)."""
    event = AuditEvent(occurred_at=at, actor=actor, action=action, subject=subject, instance_id=instance_id,
                       work_item_id=work_item_id, old=old, new=new, detail=detail)
    session.add(event)
    return event


def audit_trail(session: Session, subject: str) -> list[AuditEvent]:
    """Every audit event about one subject (call number), oldest first."""
    return list(session.scalars(select(AuditEvent).where(AuditEvent.subject == subject).order_by(AuditEvent.id)))
