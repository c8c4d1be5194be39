"""Workers: the launch spec of an allocation, its rendezvous, per-rank worker
status and a restart generation.

A placement's rendezvous port is unique among live allocations on rank 0's
node (partial unique index); a trigger clears it (and the per-rank status)
when the allocation is placed anew or leaves its GPUs, so a stale port can
never collide with a newer placement. The same trigger bumps the worker
generation on every new placement, so an agent that still holds stopped
workers of the same allocation (preempted, then placed again on this node in
the same transaction) knows to start them afresh.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ACTIVE = "('placed', 'running', 'preempting')"


def upgrade() -> None:
    with op.batch_alter_table("allocations") as table:
        table.add_column(sa.Column("worker", JSONB(), nullable=True))
        table.add_column(
            sa.Column("rendezvous_addr", sa.String(length=253), nullable=False, server_default="")
        )
        table.add_column(sa.Column("rendezvous_port", sa.Integer(), nullable=True))
        table.add_column(
            sa.Column("workers", JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb"))
        )
        table.add_column(
            sa.Column("worker_generation", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_index(
        "uq_allocations_node_rendezvous_port",
        "allocations",
        ["node", "rendezvous_port"],
        unique=True,
        postgresql_where=sa.text(f"rendezvous_port IS NOT NULL AND state IN {_ACTIVE}"),
    )
    op.execute(
        f"""
        CREATE FUNCTION allocations_reset_rendezvous() RETURNS trigger AS $$
        BEGIN
          IF NEW.placed_at IS DISTINCT FROM OLD.placed_at THEN
            NEW.rendezvous_port := NULL;
            NEW.rendezvous_addr := '';
            NEW.workers := '[]'::jsonb;
            -- A new placement is a new generation: agents start its workers afresh.
            NEW.worker_generation := OLD.worker_generation + 1;
          ELSIF NEW.state NOT IN {_ACTIVE} THEN
            NEW.rendezvous_port := NULL;
            NEW.rendezvous_addr := '';
          END IF;
          RETURN NEW;
        END
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        "CREATE TRIGGER allocations_reset_rendezvous BEFORE UPDATE ON allocations "
        "FOR EACH ROW EXECUTE FUNCTION allocations_reset_rendezvous()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER allocations_reset_rendezvous ON allocations")
    op.execute("DROP FUNCTION allocations_reset_rendezvous()")
    op.drop_index("uq_allocations_node_rendezvous_port", table_name="allocations")
    with op.batch_alter_table("allocations") as table:
        for column in (
            "worker_generation",
            "workers",
            "rendezvous_port",
            "rendezvous_addr",
            "worker",
        ):
            table.drop_column(column)
