"""Fleet rows: nodes and GPUs. Functions take a Connection; the caller owns
the transaction."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Table,
    case,
    delete,
    func,
    insert,
    select,
    update,
)

from scheduler.domain.errors import Aborted, FailedPrecondition, NotFound, quoted
from scheduler.domain.fleet import FleetSnapshot, GpuView, NodeView
from scheduler.domain.node_reports import GpuSpecInput
from scheduler.store.models import (
    ACTIVE_ALLOCATION_STATES,
    AllocationRow,
    GpuClaimRow,
    GpuRow,
    NodeRow,
)
from scheduler.store.records import GpuRecord, MigInstanceRecord, NodeRecord
from scheduler.store.residency import NodeResidency, load_node_residency, residency_t
from scheduler.store.sql import any_of

nodes_t = cast(Table, NodeRow.__table__)
gpus_t = cast(Table, GpuRow.__table__)
claims_t = cast(Table, GpuClaimRow.__table__)
allocations_t = cast(Table, AllocationRow.__table__)


def load_snapshot(conn: Connection) -> FleetSnapshot:
    """The whole fleet with its live claims, as placement sees it.

    Run it in one REPEATABLE READ transaction (see snapshot_connection): the
    nodes, GPUs and claims must come from one moment, or a node registered
    between two reads leaves GPUs without their node.
    """
    snapshot = FleetSnapshot()
    for node in load_nodes(conn, None):
        snapshot.upsert_node(node)
    return snapshot


def load_nodes(conn: Connection, names: Collection[str] | None) -> list[NodeView]:
    """These nodes (None: every node) with their GPUs and live claims; a
    deleted node is none of them (the allocator drops it from its snapshot)."""
    node_query = select(nodes_t).where(nodes_t.c.deleted_at.is_(None))
    if names is not None:
        node_query = node_query.where(any_of(nodes_t.c.name, names))
    node_rows = conn.execute(node_query).mappings().all()
    node_names = {row["id"]: row["name"] for row in node_rows}
    gpu_query = select(gpus_t)
    mig_query = select(
        claims_t.c.gpu_id, claims_t.c.mig_profile, claims_t.c.mig_start, claims_t.c.mig_size
    ).where(claims_t.c.mig_profile.is_not(None))
    if names is not None:
        gpu_query = gpu_query.where(any_of(gpus_t.c.node_id, node_names))
        mig_query = mig_query.where(
            claims_t.c.gpu_id.in_(select(gpus_t.c.id).where(any_of(gpus_t.c.node_id, node_names)))
        )
    gpu_rows = conn.execute(gpu_query).mappings().all()
    masks: dict[int, int] = defaultdict(int)
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for gpu_id, profile, start, size in conn.execute(mig_query).all():
        masks[gpu_id] |= ((1 << size) - 1) << start
        counts[gpu_id][profile] += 1
    residency = load_node_residency(conn, None if names is None else list(node_names))
    gpus_by_node: dict[int, list[GpuView]] = defaultdict(list)
    for row in gpu_rows:
        node_name = node_names.get(row["node_id"])
        if node_name is None:
            continue  # registered after the node read; the next load sees both
        warm = residency.get(row["node_id"])
        gpus_by_node[row["node_id"]].append(
            GpuView(
                id=row["id"],
                uuid=row["uuid"],
                node=node_name,
                index=row["index"],
                model=row["model"],
                memory_mib=row["memory_mib"],
                mig_enabled=row["mig_enabled"],
                healthy=row["health"] != "unhealthy",
                used_milli=row["used_milli"],
                used_memory_mib=row["used_memory_mib"],
                mig_used_mask=masks.get(row["id"], 0),
                mig_used_compute=row["mig_used_compute"],
                mig_profile_counts=dict(counts.get(row["id"], {})),
                nvlink_peers=tuple(row["nvlink_peers"]),
                resident_models=frozenset(warm.gpu_models.get(row["id"], ()))
                if warm
                else frozenset(),
                standby_models=frozenset(warm.gpu_standby.get(row["id"], ()))
                if warm
                else frozenset(),
            )
        )
    return [
        NodeView(
            name=row["name"],
            schedulable=row["admin_state"] == "active" and row["reachable"],
            labels=dict(row["labels"]),
            gpus=sorted(gpus_by_node.get(row["id"], []), key=lambda g: g.index),
            **_node_residency(residency.get(row["id"])),
        )
        for row in node_rows
    ]


def _node_residency(warm: NodeResidency | None) -> dict[str, Any]:
    if warm is None:
        return {}
    return {
        "host_ram_models": frozenset(warm.host_ram),
        "local_disk_models": frozenset(warm.local_disk),
        "model_sizes": dict(warm.sizes),
    }


@dataclass(frozen=True)
class DepartedGpu:
    """A GPU row its node no longer reports, with live claims on it."""

    gpu_id: int
    uuid: str
    index: int
    reason: str


def mark_departed_gpus(
    conn: Connection, name: str, gpus: Iterable[GpuSpecInput]
) -> list[DepartedGpu]:
    """Mark unhealthy the GPUs of this node that hold claims and are missing
    from `gpus` (replaced at their index by another UUID, or gone), so that
    nothing new lands on them while their allocations are requeued."""
    reported = list(gpus)
    node_id = conn.execute(
        select(nodes_t.c.id).where(nodes_t.c.name == name).with_for_update()
    ).scalar()
    _check_gpus_not_elsewhere(conn, name, node_id, [g.uuid for g in reported])
    if node_id is None:
        return []
    uuids = {g.uuid for g in reported}
    by_index = {g.index: g.uuid for g in reported}
    claimed = (
        select(gpus_t.c.id, gpus_t.c.uuid, gpus_t.c.index, gpus_t.c.health_reasons)
        .where(gpus_t.c.node_id == node_id, gpus_t.c.uuid.not_in(list(uuids)))
        .where(gpus_t.c.id.in_(select(claims_t.c.gpu_id)))
        .order_by(gpus_t.c.index)
        .with_for_update(of=gpus_t)
    )
    departed = []
    for gpu_id, uuid, index, reasons in conn.execute(claimed).all():
        successor = by_index.get(index)
        reason = f"replaced by {successor}" if successor else MISSING_REASON
        departed.append(DepartedGpu(gpu_id, uuid, index, reason))
        if list(reasons) != [reason]:
            conn.execute(
                update(gpus_t)
                .where(gpus_t.c.id == gpu_id)
                .values(health="unhealthy", health_reasons=[reason])
            )
    return departed


MISSING_REASON = "missing from the node's last registration"


def _check_gpus_not_elsewhere(
    conn: Connection, name: str, node_id: int | None, uuids: Collection[str]
) -> None:
    """A GPU UUID belongs to one node: another node's is FAILED_PRECONDITION,
    not a unique violation. (A deleted node's GPUs go to whoever reports them.)"""
    if not uuids:
        return
    query = (
        select(gpus_t.c.uuid, nodes_t.c.name)
        .join(nodes_t, nodes_t.c.id == gpus_t.c.node_id)
        .where(gpus_t.c.uuid.in_(list(uuids)), nodes_t.c.deleted_at.is_(None))
        .order_by(gpus_t.c.uuid)
        .limit(1)
    )
    if node_id is not None:
        query = query.where(gpus_t.c.node_id != node_id)
    taken = conn.execute(query).first()
    if taken is not None:
        raise FailedPrecondition(
            f"GPU {taken.uuid} is registered to node {taken.name}, not {name}; that node "
            "must re-register without it first"
        )


def register_node(
    conn: Connection,
    name: str,
    hostname: str,
    labels: dict[str, str],
    gpus: Iterable[GpuSpecInput],
    now: datetime,
) -> None:
    """Create or update a node and its GPUs to match what the agent reports.

    GPUs no longer reported go first (deleted, or kept unhealthy while claims
    hold them), so a new UUID can take a replaced GPU's index; a replaced GPU
    that still holds claims (mark_departed_gpus and a requeue come first) is
    ABORTED, for the agent to retry.
    """
    reported = {g.uuid: g for g in gpus}
    node_id = conn.execute(
        select(nodes_t.c.id).where(nodes_t.c.name == name).with_for_update()
    ).scalar()
    _check_gpus_not_elsewhere(conn, name, node_id, list(reported))
    _take_gpus_of_deleted_nodes(conn, node_id, list(reported))
    if node_id is None:
        node_id = conn.execute(
            insert(nodes_t)
            .values(name=name, hostname=hostname, labels=labels, last_heartbeat_at=now)
            .returning(nodes_t.c.id)
        ).scalar_one()
    else:
        # A deleted node that says hello again is registered anew (active).
        conn.execute(
            update(nodes_t)
            .where(nodes_t.c.id == node_id)
            .values(
                hostname=hostname,
                labels=labels,
                reachable=True,
                last_heartbeat_at=now,
                admin_state=case(
                    (nodes_t.c.deleted_at.is_(None), nodes_t.c.admin_state), else_="active"
                ),
                deleted_at=None,
            )
        )
    existing = {
        row["uuid"]: row
        for row in conn.execute(
            select(gpus_t).where(gpus_t.c.node_id == node_id).with_for_update()
        ).mappings()
    }
    by_index = {g.index: g.uuid for g in reported.values()}
    for uuid, row in existing.items():
        if uuid in reported:
            continue
        if not _claim_count(conn, row["id"]):
            conn.execute(delete(gpus_t).where(gpus_t.c.id == row["id"]))
            continue
        successor = by_index.get(row["index"])
        if successor is not None:
            raise Aborted(
                f"GPU {row['index']} of {name} ({uuid}) still holds allocations that are "
                f"being moved off it to make way for {successor}; retry the registration"
            )
        # Keep the row so its claims stay accounted for; nothing new lands on it.
        conn.execute(
            update(gpus_t)
            .where(gpus_t.c.id == row["id"])
            .values(health="unhealthy", health_reasons=[MISSING_REASON])
        )
    # A GPU that moves to another index parks at a negative one first, so two
    # that swap never meet on (node_id, index).
    for uuid, kept in existing.items():
        moved = reported.get(uuid)
        if moved is not None and moved.index != kept["index"]:
            conn.execute(
                update(gpus_t).where(gpus_t.c.id == kept["id"]).values(index=-1 - moved.index)
            )
    for uuid, spec in reported.items():
        values: dict[str, Any] = {
            "index": spec.index,
            "model": spec.model,
            "memory_mib": spec.memory_mib,
            "mig_enabled": spec.mig_enabled,
            "nvlink_peers": list(spec.nvlink_peers),
            "pci_bus_id": spec.pci_bus_id,
        }
        current = existing.get(uuid)
        if current is None:
            conn.execute(insert(gpus_t).values(node_id=node_id, uuid=uuid, **values))
            continue
        if current["mig_enabled"] != spec.mig_enabled and _claim_count(conn, current["id"]):
            mode = "on" if spec.mig_enabled else "off"
            raise FailedPrecondition(
                f"GPU {uuid} on {name} has live allocations; release them before "
                f"switching MIG {mode}"
            )
        if spec.memory_mib < current["used_memory_mib"]:
            raise FailedPrecondition(
                f"GPU {uuid} on {name} reports {spec.memory_mib} MiB, less than the "
                f"{current['used_memory_mib']} MiB its allocations hold"
            )
        conn.execute(update(gpus_t).where(gpus_t.c.id == current["id"]).values(**values))


def _claim_count(conn: Connection, gpu_id: int) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(claims_t).where(claims_t.c.gpu_id == gpu_id)
        ).scalar_one()
    )


def node_admin_state(conn: Connection, name: str) -> str:
    state = conn.execute(select(nodes_t.c.admin_state).where(nodes_t.c.name == name)).scalar()
    if state is None:
        raise NotFound(f"node {quoted(name)} is not registered; call RegisterNode first")
    return str(state)


def node_admin_states(conn: Connection) -> dict[str, str]:
    """Every node's admin state, by name (one read for a whole fleet's heartbeats)."""
    return {str(n): str(s) for n, s in conn.execute(select(nodes_t.c.name, nodes_t.c.admin_state))}


def set_admin_state(conn: Connection, name: str, admin_state: str) -> None:
    result = conn.execute(
        update(nodes_t)
        .where(nodes_t.c.name == name, nodes_t.c.deleted_at.is_(None))
        .values(admin_state=admin_state)
    )
    if result.rowcount == 0:
        raise NotFound(f"no node named {quoted(name)} (see `gpupool nodes`)")


def _allocation_counts_by_node(conn: Connection, node: str | None = None) -> dict[str, int]:
    """Active allocations per node they span: a gang counts on each of its
    nodes (`nodes`), not only where rank 0 is (`node`)."""
    spanned = func.unnest(allocations_t.c.nodes).label("spanned")
    inner = select(spanned).where(allocations_t.c.state.in_(ACTIVE_ALLOCATION_STATES))
    if node is not None:
        inner = inner.where(allocations_t.c.nodes.contains([node]))  # the GIN index
    per_node = inner.subquery()
    query = select(per_node.c.spanned, func.count()).group_by(per_node.c.spanned)
    if node is not None:
        query = query.where(per_node.c.spanned == node)
    rows = conn.execute(query).all()
    return {name: int(count) for name, count in rows}


def list_gpus(conn: Connection, node: str | None = None) -> list[GpuRecord]:
    query = (
        select(gpus_t, nodes_t.c.name.label("node"))
        .join(nodes_t, nodes_t.c.id == gpus_t.c.node_id)
        .where(nodes_t.c.deleted_at.is_(None))
        .order_by(nodes_t.c.name, gpus_t.c.index)
    )
    if node:
        query = query.where(nodes_t.c.name == node)
    rows = conn.execute(query).mappings().all()
    # The claims of the same GPUs by the same join, not by a list of their ids:
    # 100,000 GPUs are more bind parameters than PostgreSQL takes (65,535).
    claims_query = (
        select(
            claims_t.c.gpu_id,
            claims_t.c.allocation_id,
            claims_t.c.mig_profile,
            claims_t.c.mig_start,
            claims_t.c.mig_size,
        )
        .join(gpus_t, gpus_t.c.id == claims_t.c.gpu_id)
        .join(nodes_t, nodes_t.c.id == gpus_t.c.node_id)
        .where(nodes_t.c.deleted_at.is_(None))
    )
    if node:
        claims_query = claims_query.where(nodes_t.c.name == node)
    claims = conn.execute(claims_query).all()
    per_gpu: dict[int, list[Any]] = defaultdict(list)
    for claim in claims:
        per_gpu[claim.gpu_id].append(claim)
    records = []
    for row in rows:
        mine = per_gpu.get(row["id"], [])
        instances = tuple(
            MigInstanceRecord(c.mig_profile, c.mig_start, c.mig_size, c.allocation_id)
            for c in sorted(mine, key=lambda c: c.mig_start or 0)
            if c.mig_profile
        )
        records.append(
            GpuRecord.from_mapping(row, allocation_count=len(mine), mig_instances=instances)
        )
    return records


def list_nodes(conn: Connection, with_gpus: bool = False) -> list[NodeRecord]:
    counts = _allocation_counts_by_node(conn)
    gpus_by_node: dict[str, list[GpuRecord]] = defaultdict(list)
    for gpu in list_gpus(conn):
        gpus_by_node[gpu.node].append(gpu)
    rows = (
        conn.execute(select(nodes_t).where(nodes_t.c.deleted_at.is_(None)).order_by(nodes_t.c.name))
        .mappings()
        .all()
    )
    return [
        NodeRecord.from_mapping(
            row,
            allocation_count=counts.get(row["name"], 0),
            gpus=tuple(gpus_by_node.get(row["name"], [])),
        )
        for row in rows
    ]


def get_node(conn: Connection, name: str) -> NodeRecord:
    row = (
        conn.execute(select(nodes_t).where(nodes_t.c.name == name, nodes_t.c.deleted_at.is_(None)))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"no node named {quoted(name)} (see `gpupool nodes`)")
    count = _allocation_counts_by_node(conn, name).get(name, 0)
    return NodeRecord.from_mapping(row, allocation_count=count, gpus=tuple(list_gpus(conn, name)))


# --- deleting a node -----------------------------------------------------------


def lock_node_for_deletion(conn: Connection, name: str) -> NodeRecord:
    """The node, locked until the transaction ends (a heartbeat or a hello
    waits for the deletion); NOT_FOUND when unknown or already deleted."""
    row = (
        conn.execute(
            select(nodes_t)
            .where(nodes_t.c.name == name, nodes_t.c.deleted_at.is_(None))
            .with_for_update()
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"no node named {quoted(name)} (see `gpupool nodes`)")
    return NodeRecord.from_mapping(row)


def live_allocations_on_node(conn: Connection, name: str) -> list[str]:
    """Placed, running or preempting allocations with any rank on the node
    (`nodes`, not `node`, which is only rank 0's), oldest first."""
    return list(
        conn.execute(
            select(allocations_t.c.id)
            .where(allocations_t.c.nodes.contains([name]))
            .where(allocations_t.c.state.in_(ACTIVE_ALLOCATION_STATES))
            .order_by(allocations_t.c.created_at, allocations_t.c.id)
        ).scalars()
    )


def mark_node_deleted(conn: Connection, name: str, now: datetime) -> None:
    """Hide the node; its GPU rows and its allocations' history stay. What
    it said it holds warm goes (a returning agent reports it again)."""
    node_id = conn.execute(
        update(nodes_t)
        .where(nodes_t.c.name == name, nodes_t.c.deleted_at.is_(None))
        .values(deleted_at=now)
        .returning(nodes_t.c.id)
    ).scalar()
    conn.execute(delete(residency_t).where(residency_t.c.node_id == node_id))


def _take_gpus_of_deleted_nodes(
    conn: Connection, node_id: int | None, uuids: Collection[str]
) -> None:
    """GPUs reported here that a deleted node left behind (a host that came
    back under another name): their rows go, so this registration inserts
    them for its node. They hold no claims: a node is deleted only empty."""
    if not uuids:
        return
    deleted_nodes = select(nodes_t.c.id).where(nodes_t.c.deleted_at.is_not(None))
    if node_id is not None:
        deleted_nodes = deleted_nodes.where(nodes_t.c.id != node_id)
    conn.execute(
        delete(gpus_t).where(gpus_t.c.uuid.in_(list(uuids)), gpus_t.c.node_id.in_(deleted_nodes))
    )
