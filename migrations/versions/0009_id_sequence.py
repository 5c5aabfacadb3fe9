"""The id sequence table (SQLite): a new call's and instance's ids taken before their rows are written

A filing takes its ids first and writes all its rows in one short transaction at its end
(engine.ids).  PostgreSQL uses the tables' own sequences; SQLite, which has none, this table.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("engine_id_sequence",
                    sa.Column("name", sa.String(length=64), nullable=False),
                    sa.Column("last_id", sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint("name", name=op.f("pk_engine_id_sequence")))


def downgrade() -> None:
    op.drop_table("engine_id_sequence")
