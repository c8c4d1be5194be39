"""A partial index for the per-tenant cap on waiting allocations: counting a
tenant's pending rows must not walk its released history.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_allocations_tenant_pending",
        "allocations",
        ["tenant"],
        postgresql_where=sa.text("state = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_allocations_tenant_pending", table_name="allocations")
