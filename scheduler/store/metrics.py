"""What a metrics scrape reads: a few GROUP BY queries over live rows.

Each query is bounded by the fleet or by the live (not released) work, never
by history: the allocation counts use the queue index (`state` first), the
capacity sums read one row per GPU. The caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Table, func, select, text

from scheduler.store.models import AllocationRow, GpuRow, NodeRow

LIVE_STATES = ("pending", "placed", "running", "preempting")
MIG_COMPUTE_SLICES = 7  # every MIG-capable model in the catalogue has seven

allocations_t = cast(Table, AllocationRow.__table__)
gpus_t = cast(Table, GpuRow.__table__)
nodes_t = cast(Table, NodeRow.__table__)


@dataclass(frozen=True)
class FreeCapacity:
    """Free capacity of one GPU model on schedulable nodes and healthy GPUs."""

    model: str
    whole_gpus: int
    milli: int
    memory_mib: int
    mig_slices: int


@dataclass(frozen=True)
class PendingSummary:
    count: int
    oldest: datetime | None


def allocation_counts(conn: Connection) -> dict[tuple[str, str, str], int]:
    """Live allocations by (state, tenant, kind)."""
    a = allocations_t.c
    rows = conn.execute(
        select(a.state, a.tenant, a.kind, func.count())
        .where(a.state.in_(LIVE_STATES))
        .group_by(a.state, a.tenant, a.kind)
    ).all()
    return {(state, tenant, kind): int(n) for state, tenant, kind, n in rows}


def pending_summary(conn: Connection) -> PendingSummary:
    a = allocations_t.c
    count, oldest = conn.execute(
        select(func.count(), func.min(a.created_at)).where(a.state == "pending")
    ).one()
    return PendingSummary(int(count), oldest)


def pending_by_plugin(conn: Connection) -> dict[str, int]:
    """Waiting allocations per placement plugin that refused them (one
    allocation counts once under each plugin among its reasons)."""
    rows = conn.execute(
        text(
            "SELECT r->>'plugin' AS plugin, count(DISTINCT a.id) FROM allocations a, "
            "jsonb_array_elements(a.pending_reasons) r WHERE a.state = 'pending' "
            "GROUP BY plugin"
        )
    ).all()
    return {str(plugin): int(n) for plugin, n in rows if plugin}


def free_capacity(conn: Connection) -> list[FreeCapacity]:
    """Per GPU model: idle whole GPUs, free milli-GPU and MiB on non-MIG GPUs,
    free MIG compute slices; only what placement could use now (the node is
    reachable and active, the GPU healthy)."""
    g = gpus_t.c
    idle = (g.used_milli == 0) & (g.used_memory_mib == 0) & ~g.mig_enabled
    rows = conn.execute(
        select(
            g.model,
            func.count().filter(idle),
            func.coalesce(func.sum(1000 - g.used_milli).filter(~g.mig_enabled), 0),
            func.coalesce(func.sum(g.memory_mib - g.used_memory_mib).filter(~g.mig_enabled), 0),
            func.coalesce(
                func.sum(MIG_COMPUTE_SLICES - g.mig_used_compute).filter(g.mig_enabled), 0
            ),
        )
        .join(nodes_t, nodes_t.c.id == g.node_id)
        .where(
            nodes_t.c.reachable,
            nodes_t.c.admin_state == "active",
            nodes_t.c.deleted_at.is_(None),
            g.health == "healthy",
        )
        .group_by(g.model)
        .order_by(g.model)
    ).all()
    return [
        FreeCapacity(str(model), int(whole), int(milli), int(mib), int(mig))
        for model, whole, milli, mib, mig in rows
    ]


def node_counts(conn: Connection) -> dict[str, int]:
    """Nodes by admin state and reachability: active, cordoned, draining, unreachable."""
    n = nodes_t.c
    rows = conn.execute(
        select(n.admin_state, n.reachable, func.count())
        .where(n.deleted_at.is_(None))
        .group_by(n.admin_state, n.reachable)
    ).all()
    counts: dict[str, int] = {}
    for admin_state, reachable, count in rows:
        key = admin_state if reachable else "unreachable"
        counts[key] = counts.get(key, 0) + int(count)
    return counts
