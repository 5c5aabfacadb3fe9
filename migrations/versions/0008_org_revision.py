"""The org revision: bumped with every change of a user or an org unit

Each process keeps the users it served (with their unit chain) and reuses them while the
revision they were read at is the current one (workflows.principals).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("org_revision",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("revision", sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint("id", name=op.f("pk_org_revision")))
    op.execute("INSERT INTO org_revision (id, revision) VALUES (1, 0)")


def downgrade() -> None:
    op.drop_table("org_revision")
