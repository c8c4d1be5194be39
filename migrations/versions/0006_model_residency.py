"""Model residency: which models each node's agent reports warm, on which GPU
or in which tier (host RAM, local disk).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_residency",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("node_id", sa.BigInteger(), nullable=False),
        sa.Column("gpu_id", sa.BigInteger(), nullable=True),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("standby", sa.Boolean(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "tier IN ('gpu', 'host_ram', 'local_disk')", name=op.f("ck_model_residency_tier")
        ),
        sa.CheckConstraint(
            "(tier = 'gpu') = (gpu_id IS NOT NULL)",
            name=op.f("ck_model_residency_gpu_tier_has_gpu"),
        ),
        sa.CheckConstraint(
            "tier = 'gpu' OR NOT standby", name=op.f("ck_model_residency_standby_only_on_gpu")
        ),
        sa.CheckConstraint("size_bytes >= 0", name=op.f("ck_model_residency_size_not_negative")),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["nodes.id"],
            name=op.f("fk_model_residency_node_id_nodes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["gpu_id"],
            ["gpus.id"],
            name=op.f("fk_model_residency_gpu_id_gpus"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_residency")),
    )
    # Unique per (node, gpu, model, tier): gpu_id is NULL off the GPU tier, and
    # NULLs never collide in a plain UNIQUE, so one partial index per case.
    op.create_index(
        "uq_model_residency_gpu_model",
        "model_residency",
        ["gpu_id", "model"],
        unique=True,
        postgresql_where=sa.text("gpu_id IS NOT NULL"),
    )
    op.create_index(
        "uq_model_residency_node_model_tier",
        "model_residency",
        ["node_id", "model", "tier"],
        unique=True,
        postgresql_where=sa.text("gpu_id IS NULL"),
    )
    op.create_index("ix_model_residency_model", "model_residency", ["model"])


def downgrade() -> None:
    op.drop_table("model_residency")
