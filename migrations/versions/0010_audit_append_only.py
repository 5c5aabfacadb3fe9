"""The audit log is append-only in the database: triggers refuse UPDATE and DELETE (and TRUNCATE)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""
from alembic import op

from engine.models import APPEND_ONLY_DDL

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in APPEND_ONLY_DDL.get(op.get_bind().dialect.name, ()):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER engine_audit_event_no_truncate ON engine_audit_event")
        op.execute("DROP TRIGGER engine_audit_event_append_only ON engine_audit_event")
        op.execute("DROP FUNCTION engine_audit_event_append_only()")
    else:
        op.execute("DROP TRIGGER engine_audit_event_no_update")
        op.execute("DROP TRIGGER engine_audit_event_no_delete")
