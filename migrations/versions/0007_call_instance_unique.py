"""One call per process instance: the index on call.instance_id is unique

Without statistics (a new or never-analyzed table) PostgreSQL took ``parent_id IS NULL`` as the
selective condition of "the call of this instance" and scanned every root call on each action;
a unique index is one probe whatever the statistics say (child tickets have no instance).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("call", schema=None) as batch_op:
        batch_op.drop_index("ix_call_instance_id")
        batch_op.create_index("ix_call_instance_id", ["instance_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("call", schema=None) as batch_op:
        batch_op.drop_index("ix_call_instance_id")
        batch_op.create_index("ix_call_instance_id", ["instance_id"], unique=False)
