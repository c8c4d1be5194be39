"""Deployments, their replicas, history and latest engine metrics (migration 0011).

Functions take a Connection and never commit: the caller owns the
transaction. Reads that the reconcile loop and the watch make every tick
touch only live rows (replicas not stopped, deployments not deleted).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Integer,
    String,
    Table,
    Text,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from scheduler.domain.errors import AlreadyExists, InvalidArgument, NotFound, quoted
from scheduler.placement.gang import NVLINK_DOMAIN_LABEL
from scheduler.store.allocations import allocations_t
from scheduler.store.fleet import gpus_t, nodes_t
from scheduler.store.models import Base

REPLICA_STATES = ("starting", "ready", "standby", "draining", "stopped")
LIVE_DEPLOYMENT_STATES = ("active", "deleting")
MAX_HISTORY = 1000


class DeploymentRow(Base):
    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(128))
    """Unique per tenant among deployments not deleted."""
    model: Mapped[str] = mapped_column(String(256))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB)
    """DeploymentSpec.as_json(), defaults filled: what the loop acts on."""
    min_replicas: Mapped[int] = mapped_column(Integer)
    max_replicas: Mapped[int] = mapped_column(Integer)
    manual_replicas: Mapped[int | None] = mapped_column(Integer)
    """Set by Scale: a fixed count; NULL: the autoscaler decides."""
    desired_replicas: Mapped[int] = mapped_column(Integer, default=0)
    target_kv: Mapped[float] = mapped_column(Float)
    standby_replicas: Mapped[int] = mapped_column(Integer, default=0)
    advisory: Mapped[bool] = mapped_column(Boolean, default=False)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default="active")
    last_decision: Mapped[str] = mapped_column(Text, default="")
    autoscaler_history: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    """scheduler.autoscaling.History.to_json(): bounded by the longest window."""
    event_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DeploymentEventRow(Base):
    __tablename__ = "deployment_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    deployment_id: Mapped[str] = mapped_column(String(32), ForeignKey("deployments.id"))
    seq: Mapped[int] = mapped_column(Integer)
    """1, 2, … per deployment (deployments.event_count is the last)."""
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    from_replicas: Mapped[int] = mapped_column(Integer, default=0)
    to_replicas: Mapped[int] = mapped_column(Integer, default=0)


class ReplicaRow(Base):
    __tablename__ = "replicas"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    deployment_id: Mapped[str] = mapped_column(String(32), ForeignKey("deployments.id"))
    tenant: Mapped[str] = mapped_column(String(128))
    allocation_id: Mapped[str] = mapped_column(String(32), unique=True)
    """The allocation holding its GPUs (one replica per allocation)."""
    state: Mapped[str] = mapped_column(String(16))
    variant: Mapped[str] = mapped_column(String(64), default="")
    gpu_model: Mapped[str] = mapped_column(String(64), default="")
    gpu_count: Mapped[int] = mapped_column(Integer, default=0)
    node: Mapped[str] = mapped_column(String(253), default="")
    endpoint: Mapped[str] = mapped_column(String(300), default="")
    port: Mapped[int] = mapped_column(Integer)
    """The engine's HTTP port: unique among replicas not stopped."""
    reason: Mapped[str] = mapped_column(Text, default="")
    expected_cold_start_s: Mapped[float] = mapped_column(Float, default=0.0)
    for_standby: Mapped[bool] = mapped_column(Boolean, default=False)
    """Started to refill the standby pool: standby, not ready, once loaded."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ready_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """First time it served (cold start = ready_at - created_at)."""
    draining_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When its GPUs were given back (GPU-hours end here)."""


class ReplicaMetricsRow(Base):
    __tablename__ = "replica_metrics"

    replica_id: Mapped[str] = mapped_column(String(32), ForeignKey("replicas.id"), primary_key=True)
    observed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kv_cache_usage: Mapped[float] = mapped_column(Float, default=0.0)
    num_requests_running: Mapped[int] = mapped_column(Integer, default=0)
    num_requests_waiting: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens_total: Mapped[int] = mapped_column(BigInteger, default=0)
    """The engine's own counter (it restarts at 0 with the engine)."""
    generation_tokens_total: Mapped[int] = mapped_column(BigInteger, default=0)


deployments_t = cast(Table, DeploymentRow.__table__)
events_t = cast(Table, DeploymentEventRow.__table__)
replicas_t = cast(Table, ReplicaRow.__table__)
metrics_t = cast(Table, ReplicaMetricsRow.__table__)


@dataclass(frozen=True)
class EngineSample:
    """One scrape of a replica's engine, as its agent reported it."""

    allocation_id: str
    kv_cache_usage: float
    num_requests_running: int
    num_requests_waiting: int
    prompt_tokens_total: int
    generation_tokens_total: int


# -- deployments ------------------------------------------------------------
def insert_deployment(conn: Connection, values: dict[str, Any]) -> dict[str, Any]:
    try:
        with conn.begin_nested():
            row = conn.execute(insert(deployments_t).values(**values).returning(deployments_t))
            return dict(row.one()._mapping)
    except IntegrityError:
        raise AlreadyExists(
            f"tenant {quoted(values['tenant'])} already has a deployment named "
            f"{quoted(values['name'])} (delete it first, or choose another name)"
        ) from None


def find_deployment(
    conn: Connection,
    name: str,
    tenant: str | None,
    lock: bool = False,
    include_deleted: bool = False,
) -> dict[str, Any]:
    """The live deployment `name` of `tenant` (None: of any tenant, when only
    one has it); with include_deleted, the latest deleted one if none is live."""
    query = select(deployments_t).where(deployments_t.c.name == name)
    if include_deleted:
        query = query.order_by(
            deployments_t.c.deleted_at.desc().nulls_first(), deployments_t.c.created_at.desc()
        )
    else:
        query = query.where(deployments_t.c.state.in_(LIVE_DEPLOYMENT_STATES))
    if tenant is not None:
        query = query.where(deployments_t.c.tenant == tenant)
    if lock:
        query = query.with_for_update()
    rows = [dict(r._mapping) for r in conn.execute(query.limit(2))]
    if include_deleted and tenant is not None:
        rows = rows[:1]
    if not rows:
        where = f" of tenant {quoted(tenant)}" if tenant else ""
        raise NotFound(f"no deployment named {quoted(name)}{where}")
    if len(rows) > 1:
        raise InvalidArgument(
            f"several tenants have a deployment named {quoted(name)}: give tenant"
        )
    return rows[0]


def list_deployments(
    conn: Connection, tenant: str | None, include_deleted: bool = False
) -> list[dict[str, Any]]:
    query = select(deployments_t).order_by(deployments_t.c.tenant, deployments_t.c.name)
    if tenant is not None:
        query = query.where(deployments_t.c.tenant == tenant)
    if not include_deleted:
        query = query.where(deployments_t.c.state.in_(LIVE_DEPLOYMENT_STATES))
    return [dict(r._mapping) for r in conn.execute(query.limit(MAX_HISTORY))]


def update_deployment(conn: Connection, deployment_id: str, **values: Any) -> dict[str, Any]:
    row = conn.execute(
        update(deployments_t)
        .where(deployments_t.c.id == deployment_id)
        .values(**values)
        .returning(deployments_t)
    ).one()
    return dict(row._mapping)


def add_event(
    conn: Connection,
    deployment_id: str,
    kind: str,
    message: str,
    at: datetime,
    from_replicas: int = 0,
    to_replicas: int = 0,
) -> None:
    seq = conn.execute(
        update(deployments_t)
        .where(deployments_t.c.id == deployment_id)
        .values(event_count=deployments_t.c.event_count + 1)
        .returning(deployments_t.c.event_count)
    ).scalar_one()
    conn.execute(
        insert(events_t).values(
            deployment_id=deployment_id,
            seq=seq,
            at=at,
            kind=kind,
            message=message,
            from_replicas=from_replicas,
            to_replicas=to_replicas,
        )
    )


def history(conn: Connection, deployment_id: str, limit: int) -> list[dict[str, Any]]:
    """The last `limit` events, oldest first."""
    rows = conn.execute(
        select(events_t)
        .where(events_t.c.deployment_id == deployment_id)
        .order_by(events_t.c.seq.desc())
        .limit(min(limit, MAX_HISTORY))
    )
    return [dict(r._mapping) for r in reversed(list(rows))]


# -- replicas ---------------------------------------------------------------
def _replica_query(live_only: bool) -> Any:
    columns: list[Any] = [
        replicas_t,
        deployments_t.c.name.label("deployment"),
        deployments_t.c.model.label("model"),
        # The deployment's routing policy (spec.routing; absent in older specs: NULL).
        deployments_t.c.spec["routing"].astext.label("routing"),
        metrics_t.c.observed_at,
        metrics_t.c.kv_cache_usage,
        metrics_t.c.num_requests_running,
        metrics_t.c.num_requests_waiting,
        metrics_t.c.prompt_tokens_total,
        metrics_t.c.generation_tokens_total,
    ]
    query = (
        select(*columns)
        .join(deployments_t, deployments_t.c.id == replicas_t.c.deployment_id)
        .outerjoin(metrics_t, metrics_t.c.replica_id == replicas_t.c.id)
        .order_by(replicas_t.c.created_at, replicas_t.c.id)
    )
    if live_only:
        query = query.where(replicas_t.c.state != "stopped")
    return query


def replicas_of(
    conn: Connection, deployment_ids: Sequence[str], live_only: bool = True
) -> list[dict[str, Any]]:
    if not deployment_ids:
        return []
    query = _replica_query(live_only).where(replicas_t.c.deployment_id.in_(deployment_ids))
    return [dict(r._mapping) for r in conn.execute(query)]


def live_replicas(conn: Connection, tenant: str | None, deployment: str) -> list[dict[str, Any]]:
    """Replicas not stopped, of one deployment (by name) or all, of one tenant or all."""
    query = _replica_query(True).where(deployments_t.c.state.in_(LIVE_DEPLOYMENT_STATES))
    if tenant is not None:
        query = query.where(replicas_t.c.tenant == tenant)
    if deployment:
        query = query.where(deployments_t.c.name == deployment)
    return [dict(r._mapping) for r in conn.execute(query)]


def insert_replica(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(replicas_t).values(**values))


def update_replica(conn: Connection, replica_id: str, **values: Any) -> None:
    conn.execute(update(replicas_t).where(replicas_t.c.id == replica_id).values(**values))


def taken_ports(conn: Connection, stopped_since: datetime) -> set[int]:
    """Ports of live replicas, and of replicas stopped since `stopped_since`
    (their engine may still be shutting down and holding the port)."""
    r = replicas_t.c
    query = select(r.port).where(or_(r.state != "stopped", r.stopped_at > stopped_since))
    return set(conn.execute(query).scalars())


def allocations_of(conn: Connection, allocation_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The allocation columns the loop reads per replica."""
    ids = sorted(set(allocation_ids))
    if not ids:
        return {}
    a = allocations_t.c
    rows = conn.execute(
        select(
            a.id, a.state, a.node, a.bindings, a.workers, a.gpu_count, a.gpu_models, a.message
        ).where(a.id.in_(ids))
    )
    return {r.id: dict(r._mapping) for r in rows}


def record_samples(
    conn: Connection, node: str, samples: Sequence[EngineSample], at: datetime
) -> int:
    """Keep each sample as its replica's latest, for replicas on `node` only
    (an agent speaks for its own node); returns how many were kept."""
    if not samples:
        return 0
    by_allocation = {s.allocation_id: s for s in samples}
    rows = conn.execute(
        select(replicas_t.c.id, replicas_t.c.allocation_id).where(
            replicas_t.c.allocation_id.in_(sorted(by_allocation)),
            replicas_t.c.node == node,
            replicas_t.c.state != "stopped",
        )
    ).all()
    if not rows:
        return 0
    values = []
    for replica_id, allocation_id in rows:
        s = by_allocation[allocation_id]
        values.append(
            {
                "replica_id": replica_id,
                "observed_at": at,
                "kv_cache_usage": s.kv_cache_usage,
                "num_requests_running": s.num_requests_running,
                "num_requests_waiting": s.num_requests_waiting,
                "prompt_tokens_total": s.prompt_tokens_total,
                "generation_tokens_total": s.generation_tokens_total,
            }
        )
    statement = pg_insert(metrics_t).values(values)
    excluded = statement.excluded
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[metrics_t.c.replica_id],
            set_={c: excluded[c] for c in values[0] if c != "replica_id"},
        )
    )
    return len(values)


def gpu_counts(conn: Connection) -> list[tuple[str, str, str]]:
    """(GPU model, node, NVLink domain label) of every GPU outside MIG mode on
    a node not deleted: what a replica could ever be placed on."""
    g, n = gpus_t.c, nodes_t.c
    rows = conn.execute(
        select(g.model, n.name, n.labels[NVLINK_DOMAIN_LABEL].astext)
        .join(nodes_t, nodes_t.c.id == g.node_id)
        .where(g.mig_enabled.is_(False), n.deleted_at.is_(None))
    )
    return [(str(m), str(node), str(label or "")) for m, node, label in rows]


def node_labels(conn: Connection) -> dict[str, dict[str, str]]:
    """Every node's labels (zone, rack …), for spreading replicas."""
    rows = conn.execute(
        select(nodes_t.c.name, nodes_t.c.labels).where(nodes_t.c.deleted_at.is_(None))
    )
    return {str(name): {str(k): str(v) for k, v in (labels or {}).items()} for name, labels in rows}
