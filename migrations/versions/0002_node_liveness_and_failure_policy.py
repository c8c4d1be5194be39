"""Node liveness (unreachable_since, agent_info) and the allocation failure policy.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 23:51:53.800823
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Server defaults fill the existing rows; new rows get theirs from the models.
    op.add_column(
        "allocations",
        sa.Column("on_failure", sa.String(length=16), nullable=False, server_default="requeue"),
    )
    op.create_check_constraint(
        op.f("ck_allocations_on_failure"), "allocations", "on_failure IN ('requeue', 'fail')"
    )
    op.add_column(
        "nodes", sa.Column("unreachable_since", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "nodes",
        sa.Column(
            "agent_info",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            server_default="{}",
        ),
    )


def downgrade() -> None:
    op.drop_column("nodes", "agent_info")
    op.drop_column("nodes", "unreachable_since")
    op.drop_constraint(op.f("ck_allocations_on_failure"), "allocations", type_="check")
    op.drop_column("allocations", "on_failure")
