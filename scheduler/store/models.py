"""SQLAlchemy models. PostgreSQL holds the invariants (see DESIGN.md §2.1).

The schema itself is created by alembic (migrations/), never by create_all;
these classes describe it for queries and must match the migrations.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ALLOCATION_STATES = ("pending", "placed", "running", "preempting", "released", "failed")
ACTIVE_ALLOCATION_STATES = ("placed", "running", "preempting")
NODE_ADMIN_STATES = ("active", "cordoned", "draining")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSONB, list[Any]: JSONB}


class NodeRow(Base):
    __tablename__ = "nodes"
    __table_args__ = (CheckConstraint(f"admin_state IN {NODE_ADMIN_STATES!r}", name="admin_state"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)
    hostname: Mapped[str] = mapped_column(String(253), default="")
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    admin_state: Mapped[str] = mapped_column(String(16), default="active")
    """active | cordoned | draining: set by admins; reachability is derived from heartbeats."""
    reachable: Mapped[bool] = mapped_column(Boolean, default=True)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    unreachable_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Set when heartbeats stop; its allocations are failed over a grace period later."""
    agent_info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """What the agent said of itself at its last hello (version, simulated)."""
    registered_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Set by `gpupool node delete`: hidden from the fleet, its GPUs' history kept."""


class GpuRow(Base):
    """One physical GPU with its claim counters.

    The counters are maintained by a trigger on gpu_claims (the claim rows are
    the truth) and bounded by CHECK constraints, so an over-commit aborts the
    transaction whatever the Python code believed.
    """

    __tablename__ = "gpus"
    __table_args__ = (
        CheckConstraint("used_milli BETWEEN 0 AND 1000", name="milli_within_gpu"),
        CheckConstraint("used_memory_mib BETWEEN 0 AND memory_mib", name="memory_within_gpu"),
        CheckConstraint("mig_used_compute BETWEEN 0 AND 7", name="mig_compute_within_gpu"),
        CheckConstraint(
            "NOT mig_enabled OR (used_milli = 0 AND used_memory_mib = 0)",
            name="mig_gpu_has_no_fraction_claims",
        ),
        CheckConstraint("mig_enabled OR mig_used_compute = 0", name="full_gpu_has_no_mig_claims"),
        UniqueConstraint("node_id", "index"),
        # Target of mig_slots' composite foreign key: a slot row can only point
        # at a GPU whose mig_enabled is true.
        UniqueConstraint("id", "mig_enabled"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="RESTRICT"))
    uuid: Mapped[str] = mapped_column(String(96), unique=True)
    index: Mapped[int] = mapped_column(SmallInteger)
    model: Mapped[str] = mapped_column(String(64))
    memory_mib: Mapped[int] = mapped_column(BigInteger)
    mig_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    health: Mapped[str] = mapped_column(String(16), default="healthy")
    """healthy | degraded | unhealthy, as the node agent's health policy judged it."""
    health_reasons: Mapped[list[Any]] = mapped_column(default=list)
    nvlink_peers: Mapped[list[Any]] = mapped_column(default=list)
    pci_bus_id: Mapped[str] = mapped_column(String(32), default="")
    used_milli: Mapped[int] = mapped_column(Integer, default=0)
    """Sum of gpu_claims.milli on this GPU; ≤ 1000."""
    used_memory_mib: Mapped[int] = mapped_column(BigInteger, default=0)
    """Sum of gpu_claims.memory_mib on this GPU; ≤ memory_mib."""
    mig_used_compute: Mapped[int] = mapped_column(SmallInteger, default=0)
    """Sum of MIG compute slices claimed; ≤ 7."""


class AllocationRow(Base):
    __tablename__ = "allocations"
    __table_args__ = (
        UniqueConstraint("tenant", "request_id"),
        CheckConstraint(f"state IN {ALLOCATION_STATES!r}", name="state"),
        CheckConstraint("kind IN ('whole', 'fraction', 'mig')", name="kind"),
        CheckConstraint("on_failure IN ('requeue', 'fail')", name="on_failure"),
        Index("ix_allocations_queue", "state", text("priority DESC"), "queue_seq"),
        Index("ix_allocations_tenant_created", "tenant", "created_at"),
        Index(
            "ix_allocations_tenant_pending", "tenant", postgresql_where=text("state = 'pending'")
        ),
        Index("ix_allocations_nodes", "nodes", postgresql_using="gin"),
        Index(
            "ix_allocations_preempted_for",
            "preempted_for",
            postgresql_where=text("preempted_for <> ''"),
        ),
        Index(
            "ix_allocations_preempting_deadline",
            "preemption_deadline",
            postgresql_where=text("state = 'preempting'"),
        ),
        Index(
            "uq_allocations_node_rendezvous_port",
            "node",
            "rendezvous_port",
            unique=True,
            postgresql_where=text(
                f"rendezvous_port IS NOT NULL AND state IN {ACTIVE_ALLOCATION_STATES!r}"
            ),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    request_id: Mapped[str] = mapped_column(String(128))
    request_hash: Mapped[str] = mapped_column(String(64))
    """sha256 of the canonical request body: a retry with another body is ALREADY_EXISTS."""
    kind: Mapped[str] = mapped_column(String(16))
    gpu_count: Mapped[int] = mapped_column(Integer, default=0)
    milli: Mapped[int] = mapped_column(Integer, default=0)
    memory_mib: Mapped[int] = mapped_column(BigInteger, default=0)
    mig_profile: Mapped[str] = mapped_column(String(32), default="")
    gpu_models: Mapped[list[Any]] = mapped_column(default=list)
    priority_class: Mapped[str] = mapped_column(String(32))
    priority: Mapped[int] = mapped_column(Integer)
    workload_class: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(256), default="")
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16))
    pending_reasons: Mapped[list[Any]] = mapped_column(default=list)
    unschedulable: Mapped[bool] = mapped_column(Boolean, default=False)
    bindings: Mapped[list[Any]] = mapped_column(default=list)
    """The GPUs held while placed, kept after release as history (live claims are gpu_claims)."""
    message: Mapped[str] = mapped_column(Text, default="")
    node: Mapped[str] = mapped_column(String(253), default="", index=True)
    """Rank 0's node of the current (or last) placement; empty while never placed."""
    nodes: Mapped[list[str]] = mapped_column(
        ARRAY(String(253)), default=list, server_default=text("'{}'::varchar[]")
    )
    """Every node the current placement spans, rank 0's first; empty while not placed."""
    layout: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    """Whole GPUs only: {tp, pp, ep, cp, replicas}; bindings are in rank order."""
    model_spec: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    """The model to serve as the caller described it (name, params, dtype, context …)."""
    layout_choice: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    """What automatic layout chose from model_spec, with its explanation lines."""
    queue_seq: Mapped[int] = mapped_column(BigInteger, Identity())
    """Arrival order; pending allocations are placed by (priority desc, queue_seq)."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    event_count: Mapped[int] = mapped_column(Integer, default=0)
    on_failure: Mapped[str] = mapped_column(String(16), default="requeue")
    """requeue | fail: what a GPU or node failure (or a drain) does to this allocation."""
    placed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Start of the current placement: minimum-runtime protection and lost work count from it."""
    checkpoint_uri: Mapped[str] = mapped_column(Text, default="")
    last_checkpoint_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resume_from: Mapped[str] = mapped_column(Text, default="")
    """The checkpoint a requeued allocation resumes from when placed again."""
    preemption_deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """While preempting: revoked at this time if the holder has not acknowledged."""
    preempted_for: Mapped[str] = mapped_column(String(32), default="")
    preemption_count: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[dict[str, Any] | None] = mapped_column()
    """The WorkerSpec ({template, args, env}) the agents launch per rank; NULL: none."""
    rendezvous_addr: Mapped[str] = mapped_column(String(253), default="")
    rendezvous_port: Mapped[int | None] = mapped_column(Integer)
    """MASTER_PORT on rank 0's node; unique among live allocations on that node,
    cleared by trigger when the allocation is placed anew or leaves its GPUs."""
    workers: Mapped[list[Any]] = mapped_column(default=list)
    """Per-rank worker status as agents last reported it (reset on a new placement)."""
    worker_generation: Mapped[int] = mapped_column(Integer, default=0)
    """Bumped (by trigger) on each new placement, and when every node must restart
    its ranks of a multi-node gang together."""


class TenantRow(Base):
    """A tenant's guaranteed share and its weight for what is left over.

    Units are normalised GPUs: a whole GPU counts its catalogue throughput
    weight (A100-80GB = 1.0, H100 1.6, B200 2.5 …), a fraction milli/1000 of
    it, a MIG slice its compute slices / 7 of it. A tenant without a row has
    no guarantee and weight 1.
    """

    __tablename__ = "tenants"
    __table_args__ = (
        CheckConstraint("quota_units >= 0", name="quota_not_negative"),
        CheckConstraint("weight > 0", name="weight_positive"),
        CheckConstraint(
            "quota_units <> 'NaN'::float8 AND quota_units < 'Infinity'::float8",
            name="quota_finite",
        ),
        CheckConstraint(
            "weight <> 'NaN'::float8 AND weight < 'Infinity'::float8", name="weight_finite"
        ),
    )

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    quota_units: Mapped[float] = mapped_column(Float, default=0.0)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    priority_classes: Mapped[list[str] | None] = mapped_column(ARRAY(String(64)))
    """Priority classes the tenant's service tokens may ask for; NULL: every class
    but critical (scheduler.domain.priorities.default_granted_classes)."""


class ApiTokenRow(Base):
    """A bearer token. Only the SHA-256 of its secret is stored: the secret is
    256 random bits, so a fast hash is enough (nothing to brute-force)."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        CheckConstraint("role IN ('service', 'viewer', 'admin')", name="role"),
        CheckConstraint("role <> 'service' OR tenant <> ''", name="service_has_tenant"),
        CheckConstraint("length(secret_sha256) = 64", name="hash_length"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    tenant: Mapped[str] = mapped_column(String(128), default="")
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(256))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEventRow(Base):
    """One state-changing call: who (actor, role, tenant, node), what (method),
    on what (target), from where (peer), when, and how it ended (status code)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_at", "at"),
        Index("ix_audit_events_actor_at", "actor", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    tenant: Mapped[str] = mapped_column(String(128))
    node: Mapped[str] = mapped_column(String(253))
    method: Mapped[str] = mapped_column(String(128))
    target: Mapped[str] = mapped_column(String(256))
    peer: Mapped[str] = mapped_column(String(128))
    code: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(String(512))


class GpuClaimRow(Base):
    """A live claim of one allocation on one GPU; inserting or deleting one
    moves the GPU's counters (trigger gpu_claims_apply)."""

    __tablename__ = "gpu_claims"
    __table_args__ = (
        UniqueConstraint("allocation_id", "gpu_id"),
        CheckConstraint("milli BETWEEN 0 AND 1000", name="milli"),
        CheckConstraint("memory_mib >= 0", name="memory"),
        CheckConstraint(
            "(mig_profile IS NULL AND mig_compute = 0) OR "
            "(mig_profile IS NOT NULL AND milli = 0 AND memory_mib = 0 AND mig_compute > 0)",
            name="one_kind",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    allocation_id: Mapped[str] = mapped_column(ForeignKey("allocations.id", ondelete="CASCADE"))
    gpu_id: Mapped[int] = mapped_column(ForeignKey("gpus.id", ondelete="RESTRICT"), index=True)
    milli: Mapped[int] = mapped_column(Integer, default=0)
    memory_mib: Mapped[int] = mapped_column(BigInteger, default=0)
    mig_profile: Mapped[str | None] = mapped_column(String(32))
    mig_start: Mapped[int | None] = mapped_column(SmallInteger)
    mig_size: Mapped[int] = mapped_column(SmallInteger, default=0)
    mig_compute: Mapped[int] = mapped_column(SmallInteger, default=0)


class MigSlotRow(Base):
    """One occupied MIG memory slice. The primary key (gpu_id, slot) makes
    overlapping instances impossible; the composite foreign key to
    gpus(id, mig_enabled) with mig_enabled fixed true keeps MIG claims off
    GPUs that are not in MIG mode. Deleting the claim deletes its slots."""

    __tablename__ = "mig_slots"
    __table_args__ = (
        CheckConstraint("slot BETWEEN 0 AND 7", name="slot_range"),
        CheckConstraint("mig_enabled", name="only_on_mig_gpus"),
        ForeignKeyConstraint(
            ["gpu_id", "mig_enabled"],
            ["gpus.id", "gpus.mig_enabled"],
            ondelete="RESTRICT",
            onupdate="RESTRICT",
        ),
        ForeignKeyConstraint(
            ["allocation_id", "gpu_id"],
            ["gpu_claims.allocation_id", "gpu_claims.gpu_id"],
            ondelete="CASCADE",
        ),
    )

    gpu_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    slot: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    mig_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    allocation_id: Mapped[str] = mapped_column(String(32), index=True)


class AllocationEventRow(Base):
    __tablename__ = "allocation_events"
    __table_args__ = (UniqueConstraint("allocation_id", "seq"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    allocation_id: Mapped[str] = mapped_column(ForeignKey("allocations.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(String(32), default="")
    deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


RESIDENCY_TIERS = ("gpu", "host_ram", "local_disk")


class ModelResidencyRow(Base):
    """A model an agent reports warm on its node: loaded on one GPU (serving or
    standby), in host RAM or on local disk. Each report replaces all rows of
    its node; rows go with their node or GPU (ON DELETE CASCADE)."""

    __tablename__ = "model_residency"
    __table_args__ = (
        CheckConstraint(f"tier IN {RESIDENCY_TIERS!r}", name="tier"),
        CheckConstraint("(tier = 'gpu') = (gpu_id IS NOT NULL)", name="gpu_tier_has_gpu"),
        CheckConstraint("tier = 'gpu' OR NOT standby", name="standby_only_on_gpu"),
        CheckConstraint("size_bytes >= 0", name="size_not_negative"),
        Index(
            "uq_model_residency_gpu_model",
            "gpu_id",
            "model",
            unique=True,
            postgresql_where=text("gpu_id IS NOT NULL"),
        ),
        Index(
            "uq_model_residency_node_model_tier",
            "node_id",
            "model",
            "tier",
            unique=True,
            postgresql_where=text("gpu_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    gpu_id: Mapped[int | None] = mapped_column(ForeignKey("gpus.id", ondelete="CASCADE"))
    """Set exactly on the GPU tier: the GPU holding the weights."""
    model: Mapped[str] = mapped_column(String(256), index=True)
    """Canonical name (llm_catalogue.canonical_model_name), so aliases compare equal."""
    tier: Mapped[str] = mapped_column(String(16))
    standby: Mapped[bool] = mapped_column(Boolean, default=False)
    """GPU tier only: loaded and not serving, so a new allocation starts at once."""
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    """As the agent reported it (0: unknown; the LLM catalogue's figure is used)."""
    reported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LeaderLeaseRow(Base):
    """The one leader lease; its epoch fences a stale leader (DESIGN.md principle 5)."""

    __tablename__ = "leader_lease"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    holder: Mapped[str] = mapped_column(String(253), default="")
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


AGENT_COMMAND_STATES = ("queued", "sent", "done", "failed")


class AgentCommandRow(Base):
    """A command for an agent, relayed to whichever replica holds its stream."""

    __tablename__ = "agent_commands"
    __table_args__ = (
        CheckConstraint(f"state IN {AGENT_COMMAND_STATES!r}", name="state"),
        Index("ix_agent_commands_queued", "node", postgresql_where=text("state = 'queued'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    node: Mapped[str] = mapped_column(String(253))
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
