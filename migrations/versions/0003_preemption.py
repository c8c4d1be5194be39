"""Checkpoint-coordinated preemption: checkpoints, deadlines, resume points,
and machine-readable event reasons.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("allocations") as table:
        table.add_column(sa.Column("placed_at", _TS, nullable=True))
        table.add_column(sa.Column("checkpoint_uri", sa.Text(), nullable=False, server_default=""))
        table.add_column(sa.Column("last_checkpoint_at", _TS, nullable=True))
        table.add_column(sa.Column("resume_from", sa.Text(), nullable=False, server_default=""))
        table.add_column(sa.Column("preemption_deadline", _TS, nullable=True))
        table.add_column(
            sa.Column("preempted_for", sa.String(length=32), nullable=False, server_default="")
        )
        table.add_column(
            sa.Column("preemption_count", sa.Integer(), nullable=False, server_default="0")
        )
    op.execute("UPDATE allocations SET placed_at = updated_at WHERE state IN ('placed', 'running')")
    op.create_index(
        "ix_allocations_preempting_deadline",
        "allocations",
        ["preemption_deadline"],
        postgresql_where=sa.text("state = 'preempting'"),
    )
    with op.batch_alter_table("allocation_events") as table:
        table.add_column(
            sa.Column("reason", sa.String(length=32), nullable=False, server_default="")
        )
        table.add_column(sa.Column("deadline", _TS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("allocation_events") as table:
        table.drop_column("deadline")
        table.drop_column("reason")
    op.drop_index("ix_allocations_preempting_deadline", table_name="allocations")
    with op.batch_alter_table("allocations") as table:
        for column in (
            "preemption_count",
            "preempted_for",
            "preemption_deadline",
            "resume_from",
            "last_checkpoint_at",
            "checkpoint_uri",
            "placed_at",
        ):
            table.drop_column(column)
