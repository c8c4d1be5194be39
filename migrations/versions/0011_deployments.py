"""Deployments: serving a model as a set of replicas (issue 13).

- ``deployments``: the spec (JSONB, as the API took it) with the columns
  the reconcile loop and the checks read: bounds, target, standby, pause,
  advisory, a manual count. (tenant, name) is unique among live ones; a
  deleted deployment keeps its row and history.
- ``deployment_events``: every decision and state change, numbered per
  deployment (``gpupool deploy history``).
- ``replicas``: one per allocation a deployment asked for, with the GPU
  model and count it got and when it entered each state (cost reads these
  for GPU-hours per deployment). The engine port is unique among replicas
  that are not stopped (simulated nodes share one host).
- ``replica_metrics``: the latest engine figures per replica (one row,
  overwritten; nothing grows with time), token counters included.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("spec", JSONB(), nullable=False),
        sa.Column("min_replicas", sa.Integer(), nullable=False),
        sa.Column("max_replicas", sa.Integer(), nullable=False),
        sa.Column("manual_replicas", sa.Integer()),
        sa.Column("desired_replicas", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("target_kv", sa.Float(), nullable=False),
        sa.Column("standby_replicas", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("advisory", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("state", sa.String(16), nullable=False, server_default="active"),
        sa.Column("last_decision", sa.Text(), nullable=False, server_default=""),
        # The autoscaler's bounded memory (scheduler.autoscaling.History.to_json()).
        sa.Column("autoscaler_history", JSONB(), nullable=False, server_default="{}"),
        sa.Column("event_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("deleted_at", _TS),
        sa.CheckConstraint(
            "state IN ('active', 'deleting', 'deleted')", name="ck_deployments_state"
        ),
        sa.CheckConstraint(
            "0 <= min_replicas AND min_replicas <= max_replicas", name="ck_deployments_bounds"
        ),
        sa.CheckConstraint("target_kv > 0 AND target_kv <= 1", name="ck_deployments_target"),
        sa.CheckConstraint("standby_replicas >= 0", name="ck_deployments_standby"),
    )
    op.create_index(
        "uq_deployments_live_name",
        "deployments",
        ["tenant", "name"],
        unique=True,
        postgresql_where=sa.text("state <> 'deleted'"),
    )
    op.create_table(
        "deployment_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "deployment_id",
            sa.String(32),
            sa.ForeignKey("deployments.id", name="fk_deployment_events_deployment_id_deployments"),
            nullable=False,
        ),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("from_replicas", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("to_replicas", sa.Integer(), nullable=False, server_default="0"),
        sa.UniqueConstraint("deployment_id", "seq", name="uq_deployment_events_deployment_id_seq"),
    )
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "deployment_id",
            sa.String(32),
            sa.ForeignKey("deployments.id", name="fk_replicas_deployment_id_deployments"),
            nullable=False,
        ),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("allocation_id", sa.String(32), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("variant", sa.String(64), nullable=False, server_default=""),
        sa.Column("gpu_model", sa.String(64), nullable=False, server_default=""),
        sa.Column("gpu_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("node", sa.String(253), nullable=False, server_default=""),
        sa.Column("endpoint", sa.String(300), nullable=False, server_default=""),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("expected_cold_start_s", sa.Float(), nullable=False, server_default="0"),
        # Started to refill the standby pool: standby, not ready, once loaded.
        sa.Column("for_standby", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("state_changed_at", _TS, nullable=False),
        sa.Column("ready_at", _TS),
        sa.Column("draining_at", _TS),
        sa.Column("stopped_at", _TS),
        sa.CheckConstraint(
            "state IN ('starting', 'ready', 'standby', 'draining', 'stopped')",
            name="ck_replicas_state",
        ),
        sa.CheckConstraint("gpu_count >= 0", name="ck_replicas_gpu_count"),
    )
    op.create_index("ix_replicas_deployment_id", "replicas", ["deployment_id"])
    op.create_index(
        "uq_replicas_live_port",
        "replicas",
        ["port"],
        unique=True,
        postgresql_where=sa.text("state <> 'stopped'"),
    )
    op.create_table(
        "replica_metrics",
        sa.Column(
            "replica_id",
            sa.String(32),
            sa.ForeignKey("replicas.id", name="fk_replica_metrics_replica_id_replicas"),
            primary_key=True,
        ),
        sa.Column("observed_at", _TS, nullable=False),
        sa.Column("kv_cache_usage", sa.Float(), nullable=False, server_default="0"),
        sa.Column("num_requests_running", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("num_requests_waiting", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("prompt_tokens_total", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("generation_tokens_total", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("replica_metrics")
    op.drop_index("uq_replicas_live_port", table_name="replicas")
    op.drop_index("ix_replicas_deployment_id", table_name="replicas")
    op.drop_table("replicas")
    op.drop_table("deployment_events")
    op.drop_index("uq_deployments_live_name", table_name="deployments")
    op.drop_table("deployments")
