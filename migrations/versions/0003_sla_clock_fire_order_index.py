"""SLA sweep index covers its whole ORDER BY (next_fire_at, id)

Many clocks can share one next_fire_at (a burst of calls filed at once); with the
index on next_fire_at alone, "ORDER BY next_fire_at, id LIMIT 1" had to sort all of
them for every event fired.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("engine_sla_clock", schema=None) as batch_op:
        batch_op.drop_index("ix_engine_sla_clock_next_fire")
        batch_op.create_index("ix_engine_sla_clock_next_fire", ["next_fire_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("engine_sla_clock", schema=None) as batch_op:
        batch_op.drop_index("ix_engine_sla_clock_next_fire")
        batch_op.create_index("ix_engine_sla_clock_next_fire", ["next_fire_at"], unique=False)
