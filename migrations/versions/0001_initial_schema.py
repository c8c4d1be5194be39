"""Initial schema: fleet, allocations, claims with DB-enforced capacity invariants.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 23:29:47.700549
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


# A claim row moves its GPU's counters in the same statement; the CHECK
# constraints on gpus then reject any over-commit, whichever process wrote it.
# Updating a claim in place is refused: release is delete, placement is insert.
CLAIM_TRIGGER = """
CREATE FUNCTION gpu_claims_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    UPDATE gpus SET used_milli = used_milli + NEW.milli,
                    used_memory_mib = used_memory_mib + NEW.memory_mib,
                    mig_used_compute = mig_used_compute + NEW.mig_compute
     WHERE id = NEW.gpu_id;
    RETURN NEW;
  ELSIF TG_OP = 'DELETE' THEN
    UPDATE gpus SET used_milli = used_milli - OLD.milli,
                    used_memory_mib = used_memory_mib - OLD.memory_mib,
                    mig_used_compute = mig_used_compute - OLD.mig_compute
     WHERE id = OLD.gpu_id;
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'gpu_claims rows are immutable: delete and insert instead';
END $$;
CREATE TRIGGER gpu_claims_apply AFTER INSERT OR DELETE OR UPDATE ON gpu_claims
  FOR EACH ROW EXECUTE FUNCTION gpu_claims_apply();
"""


def upgrade() -> None:
    op.create_table(
        "allocations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("gpu_count", sa.Integer(), nullable=False),
        sa.Column("milli", sa.Integer(), nullable=False),
        sa.Column("memory_mib", sa.BigInteger(), nullable=False),
        sa.Column("mig_profile", sa.String(length=32), nullable=False),
        sa.Column("gpu_models", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("priority_class", sa.String(length=32), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("workload_class", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("labels", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("pending_reasons", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("unschedulable", sa.Boolean(), nullable=False),
        sa.Column("bindings", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("node", sa.String(length=253), nullable=False),
        sa.Column("queue_seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('whole', 'fraction', 'mig')", name=op.f("ck_allocations_kind")
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'placed', 'running', 'preempting', 'released', 'failed')",
            name=op.f("ck_allocations_state"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocations")),
        sa.UniqueConstraint("tenant", "request_id", name=op.f("uq_allocations_tenant_request_id")),
    )
    op.create_index(op.f("ix_allocations_node"), "allocations", ["node"], unique=False)
    op.create_index(
        "ix_allocations_queue",
        "allocations",
        ["state", sa.literal_column("priority DESC"), "queue_seq"],
        unique=False,
    )
    op.create_index(
        "ix_allocations_tenant_created", "allocations", ["tenant", "created_at"], unique=False
    )
    op.create_table(
        "nodes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("hostname", sa.String(length=253), nullable=False),
        sa.Column("labels", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("admin_state", sa.String(length=16), nullable=False),
        sa.Column("reachable", sa.Boolean(), nullable=False),
        sa.Column("last_heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "registered_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "admin_state IN ('active', 'cordoned', 'draining')", name=op.f("ck_nodes_admin_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nodes")),
        sa.UniqueConstraint("name", name=op.f("uq_nodes_name")),
    )
    op.create_table(
        "allocation_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("allocation_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["allocation_id"],
            ["allocations.id"],
            name=op.f("fk_allocation_events_allocation_id_allocations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocation_events")),
        sa.UniqueConstraint(
            "allocation_id", "seq", name=op.f("uq_allocation_events_allocation_id_seq")
        ),
    )
    op.create_table(
        "gpus",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("node_id", sa.BigInteger(), nullable=False),
        sa.Column("uuid", sa.String(length=96), nullable=False),
        sa.Column("index", sa.SmallInteger(), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("memory_mib", sa.BigInteger(), nullable=False),
        sa.Column("mig_enabled", sa.Boolean(), nullable=False),
        sa.Column("health", sa.String(length=16), nullable=False),
        sa.Column("health_reasons", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("nvlink_peers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("pci_bus_id", sa.String(length=32), nullable=False),
        sa.Column("used_milli", sa.Integer(), nullable=False),
        sa.Column("used_memory_mib", sa.BigInteger(), nullable=False),
        sa.Column("mig_used_compute", sa.SmallInteger(), nullable=False),
        sa.CheckConstraint(
            "NOT mig_enabled OR (used_milli = 0 AND used_memory_mib = 0)",
            name=op.f("ck_gpus_mig_gpu_has_no_fraction_claims"),
        ),
        sa.CheckConstraint(
            "mig_enabled OR mig_used_compute = 0", name=op.f("ck_gpus_full_gpu_has_no_mig_claims")
        ),
        sa.CheckConstraint(
            "mig_used_compute BETWEEN 0 AND 7", name=op.f("ck_gpus_mig_compute_within_gpu")
        ),
        sa.CheckConstraint(
            "used_memory_mib BETWEEN 0 AND memory_mib", name=op.f("ck_gpus_memory_within_gpu")
        ),
        sa.CheckConstraint("used_milli BETWEEN 0 AND 1000", name=op.f("ck_gpus_milli_within_gpu")),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_gpus_node_id_nodes"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gpus")),
        sa.UniqueConstraint("id", "mig_enabled", name=op.f("uq_gpus_id_mig_enabled")),
        sa.UniqueConstraint("node_id", "index", name=op.f("uq_gpus_node_id_index")),
        sa.UniqueConstraint("uuid", name=op.f("uq_gpus_uuid")),
    )
    op.create_table(
        "gpu_claims",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("allocation_id", sa.String(length=32), nullable=False),
        sa.Column("gpu_id", sa.BigInteger(), nullable=False),
        sa.Column("milli", sa.Integer(), nullable=False),
        sa.Column("memory_mib", sa.BigInteger(), nullable=False),
        sa.Column("mig_profile", sa.String(length=32), nullable=True),
        sa.Column("mig_start", sa.SmallInteger(), nullable=True),
        sa.Column("mig_size", sa.SmallInteger(), nullable=False),
        sa.Column("mig_compute", sa.SmallInteger(), nullable=False),
        sa.CheckConstraint(
            "(mig_profile IS NULL AND mig_compute = 0) OR (mig_profile IS NOT NULL AND milli = 0 AND memory_mib = 0 AND mig_compute > 0)",
            name=op.f("ck_gpu_claims_one_kind"),
        ),
        sa.CheckConstraint("memory_mib >= 0", name=op.f("ck_gpu_claims_memory")),
        sa.CheckConstraint("milli BETWEEN 0 AND 1000", name=op.f("ck_gpu_claims_milli")),
        sa.ForeignKeyConstraint(
            ["allocation_id"],
            ["allocations.id"],
            name=op.f("fk_gpu_claims_allocation_id_allocations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["gpu_id"], ["gpus.id"], name=op.f("fk_gpu_claims_gpu_id_gpus"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gpu_claims")),
        sa.UniqueConstraint(
            "allocation_id", "gpu_id", name=op.f("uq_gpu_claims_allocation_id_gpu_id")
        ),
    )
    op.create_index(op.f("ix_gpu_claims_gpu_id"), "gpu_claims", ["gpu_id"], unique=False)
    op.create_table(
        "mig_slots",
        sa.Column("gpu_id", sa.BigInteger(), nullable=False),
        sa.Column("slot", sa.SmallInteger(), nullable=False),
        sa.Column("mig_enabled", sa.Boolean(), nullable=False),
        sa.Column("allocation_id", sa.String(length=32), nullable=False),
        sa.CheckConstraint("mig_enabled", name=op.f("ck_mig_slots_only_on_mig_gpus")),
        sa.CheckConstraint("slot BETWEEN 0 AND 7", name=op.f("ck_mig_slots_slot_range")),
        sa.ForeignKeyConstraint(
            ["allocation_id", "gpu_id"],
            ["gpu_claims.allocation_id", "gpu_claims.gpu_id"],
            name=op.f("fk_mig_slots_allocation_id_gpu_id_gpu_claims"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["gpu_id", "mig_enabled"],
            ["gpus.id", "gpus.mig_enabled"],
            name=op.f("fk_mig_slots_gpu_id_mig_enabled_gpus"),
            onupdate="RESTRICT",
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("gpu_id", "slot", name=op.f("pk_mig_slots")),
    )
    op.create_index(
        op.f("ix_mig_slots_allocation_id"), "mig_slots", ["allocation_id"], unique=False
    )
    op.execute(CLAIM_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER gpu_claims_apply ON gpu_claims")
    op.execute("DROP FUNCTION gpu_claims_apply()")
    op.drop_index(op.f("ix_mig_slots_allocation_id"), table_name="mig_slots")
    op.drop_table("mig_slots")
    op.drop_index(op.f("ix_gpu_claims_gpu_id"), table_name="gpu_claims")
    op.drop_table("gpu_claims")
    op.drop_table("gpus")
    op.drop_table("allocation_events")
    op.drop_table("nodes")
    op.drop_index("ix_allocations_tenant_created", table_name="allocations")
    op.drop_index("ix_allocations_queue", table_name="allocations")
    op.drop_index(op.f("ix_allocations_node"), table_name="allocations")
    op.drop_table("allocations")
