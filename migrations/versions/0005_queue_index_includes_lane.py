"""The work-queue index carries the lane (PostgreSQL INCLUDE), so counting a unit's queue needs no table rows

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = ["owner_unit", "state", "due_at", "created_at", "id"]


def upgrade() -> None:
    with op.batch_alter_table("engine_work_item", schema=None) as batch_op:
        batch_op.drop_index("ix_engine_work_item_queue_due")
        batch_op.create_index("ix_engine_work_item_queue_due", COLUMNS, unique=False, postgresql_include=["lane"])


def downgrade() -> None:
    with op.batch_alter_table("engine_work_item", schema=None) as batch_op:
        batch_op.drop_index("ix_engine_work_item_queue_due")
        batch_op.create_index("ix_engine_work_item_queue_due", COLUMNS, unique=False)
