"""Failover: a leader lease with an epoch, a relay table for agent commands,
and soft-deleted nodes.

- ``leader_lease`` is one row. A replica becomes leader by taking an expired
  lease and raising its epoch; work done as leader re-reads the row in its own
  transaction (``FOR SHARE``), so a paused ex-leader cannot act after another
  replica took over.
- ``agent_commands`` carries a command (fault inject, logs, stop …) from the
  replica an admin asked to the replica holding the agent's stream.
- ``nodes.deleted_at`` hides a deleted node while its GPUs' history stays
  readable (gpus and allocations keep their rows).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leader_lease",
        sa.Column("id", sa.SmallInteger(), primary_key=True),
        sa.Column("epoch", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("holder", sa.String(253), nullable=False, server_default=""),
        sa.Column(
            "expires_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("'-infinity'"),
        ),
        sa.CheckConstraint("id = 1", name="ck_leader_lease_single_row"),
    )
    op.execute("INSERT INTO leader_lease (id) VALUES (1)")
    op.create_table(
        "agent_commands",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("node", sa.String(253), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload", JSONB(), nullable=False, server_default="{}"),
        sa.Column("state", sa.String(16), nullable=False, server_default="queued"),
        sa.Column("result", JSONB(), nullable=False, server_default="{}"),
        sa.Column("error", sa.Text(), nullable=False, server_default=""),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(
            "state IN ('queued', 'sent', 'done', 'failed')", name="ck_agent_commands_state"
        ),
    )
    op.create_index(
        "ix_agent_commands_queued",
        "agent_commands",
        ["node"],
        postgresql_where=sa.text("state = 'queued'"),
    )
    op.add_column("nodes", sa.Column("deleted_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("nodes", "deleted_at")
    op.drop_index("ix_agent_commands_queued", table_name="agent_commands")
    op.drop_table("agent_commands")
    op.drop_table("leader_lease")
