"""Model residency rows. Functions take a Connection; the caller owns the
transaction. A node's report replaces all of its rows at once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Table, delete, insert, select

from scheduler.domain.errors import NotFound
from scheduler.domain.model_loading import GPU, HOST_RAM, LOCAL_DISK
from scheduler.domain.residency import ResidentModel
from scheduler.store.models import GpuRow, ModelResidencyRow, NodeRow
from scheduler.store.sql import any_of

residency_t = cast(Table, ModelResidencyRow.__table__)
nodes_t = cast(Table, NodeRow.__table__)
gpus_t = cast(Table, GpuRow.__table__)


@dataclass
class NodeResidency:
    """One node's residency in the shape the fleet snapshot wants."""

    gpu_models: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    gpu_standby: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    host_ram: set[str] = field(default_factory=set)
    local_disk: set[str] = field(default_factory=set)
    sizes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ResidencyRecord:
    node: str
    model: str
    tier: str
    gpu_uuid: str
    gpu_index: int | None
    gpu_model: str  # the GPU's catalogue model ("" off the GPU tier)
    standby: bool
    size_bytes: int
    reported_at: datetime


def replace_node_residency(
    conn: Connection, node: str, entries: Sequence[ResidentModel], now: datetime
) -> None:
    """Make the node's rows exactly `entries` (validated: GPU uuids belong to the node)."""
    node_id = conn.execute(
        select(nodes_t.c.id).where(nodes_t.c.name == node).with_for_update()
    ).scalar()
    if node_id is None:
        raise NotFound(f"node {node!r} is not registered; call RegisterNode first")
    gpu_ids = dict(
        conn.execute(select(gpus_t.c.uuid, gpus_t.c.id).where(gpus_t.c.node_id == node_id)).all()
    )
    conn.execute(delete(residency_t).where(residency_t.c.node_id == node_id))
    rows = [
        {
            "node_id": node_id,
            "gpu_id": gpu_ids[e.gpu_uuid] if e.tier == GPU else None,
            "model": e.model,
            "tier": e.tier,
            "standby": e.standby,
            "size_bytes": e.size_bytes,
            "reported_at": now,
        }
        for e in entries
    ]
    if rows:
        conn.execute(insert(residency_t), rows)


def load_node_residency(
    conn: Connection, node_ids: Collection[int] | None
) -> dict[int, NodeResidency]:
    """Residency per node id (None: every node) for the fleet snapshot."""
    query = select(
        residency_t.c.node_id,
        residency_t.c.gpu_id,
        residency_t.c.model,
        residency_t.c.tier,
        residency_t.c.standby,
        residency_t.c.size_bytes,
    )
    if node_ids is not None:
        query = query.where(any_of(residency_t.c.node_id, node_ids))
    result: dict[int, NodeResidency] = defaultdict(NodeResidency)
    for node_id, gpu_id, model, tier, standby, size in conn.execute(query).all():
        residency = result[node_id]
        if size:
            residency.sizes[model] = max(size, residency.sizes.get(model, 0))
        if tier == GPU and gpu_id is not None:
            residency.gpu_models[gpu_id].add(model)
            if standby:
                residency.gpu_standby[gpu_id].add(model)
        elif tier == HOST_RAM:
            residency.host_ram.add(model)
        elif tier == LOCAL_DISK:
            residency.local_disk.add(model)
    return result


def list_residency(conn: Connection, model: str = "") -> list[ResidencyRecord]:
    """Every residency row (or one model's), by model, node, GPU index, tier."""
    query = (
        select(
            residency_t,
            nodes_t.c.name.label("node"),
            gpus_t.c.uuid.label("gpu_uuid"),
            gpus_t.c.index.label("gpu_index"),
            gpus_t.c.model.label("gpu_model"),
        )
        .join(nodes_t, nodes_t.c.id == residency_t.c.node_id)
        .outerjoin(gpus_t, gpus_t.c.id == residency_t.c.gpu_id)
        .order_by(residency_t.c.model, nodes_t.c.name, gpus_t.c.index, residency_t.c.tier)
    )
    if model:
        query = query.where(residency_t.c.model == model)
    return [
        ResidencyRecord(
            node=row["node"],
            model=row["model"],
            tier=row["tier"],
            gpu_uuid=row["gpu_uuid"] or "",
            gpu_index=row["gpu_index"],
            gpu_model=row["gpu_model"] or "",
            standby=row["standby"],
            size_bytes=row["size_bytes"],
            reported_at=row["reported_at"],
        )
        for row in conn.execute(query).mappings()
    ]


def node_gpu_uuids(conn: Connection, node: str) -> set[str]:
    """UUIDs of the node's GPUs; NotFound for an unregistered node."""
    node_id = conn.execute(select(nodes_t.c.id).where(nodes_t.c.name == node)).scalar()
    if node_id is None:
        raise NotFound(f"node {node!r} is not registered; call RegisterNode first")
    return set(conn.execute(select(gpus_t.c.uuid).where(gpus_t.c.node_id == node_id)).scalars())
