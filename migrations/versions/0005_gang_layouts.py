"""Gang layouts: an allocation's parallel layout, every node it spans, and the
model spec automatic layout derives resources from.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("allocations", sa.Column("layout", postgresql.JSONB(), nullable=True))
    op.add_column("allocations", sa.Column("model_spec", postgresql.JSONB(), nullable=True))
    op.add_column("allocations", sa.Column("layout_choice", postgresql.JSONB(), nullable=True))
    op.add_column(
        "allocations",
        sa.Column(
            "nodes",
            postgresql.ARRAY(sa.String(length=253)),
            server_default=sa.text("'{}'::varchar[]"),
            nullable=False,
        ),
    )
    op.execute("UPDATE allocations SET nodes = ARRAY[node] WHERE node <> ''")
    op.create_index("ix_allocations_nodes", "allocations", ["nodes"], postgresql_using="gin")
    # Node reservations look up every victim of a preemptor (store.reserved_nodes).
    op.create_index(
        "ix_allocations_preempted_for",
        "allocations",
        ["preempted_for"],
        postgresql_where=sa.text("preempted_for <> ''"),
    )


def downgrade() -> None:
    op.drop_index("ix_allocations_preempted_for", table_name="allocations")
    op.drop_index("ix_allocations_nodes", table_name="allocations")
    op.drop_column("allocations", "nodes")
    op.drop_column("allocations", "layout_choice")
    op.drop_column("allocations", "model_spec")
    op.drop_column("allocations", "layout")
