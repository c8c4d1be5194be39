"""Node liveness and GPU health rows: heartbeats, unreachable nodes, health
reports. Functions take a Connection; the caller owns the transaction."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, or_, select, text, update
from sqlalchemy.dialects.postgresql import array

from scheduler.store.fleet import allocations_t, claims_t, gpus_t, nodes_t
from scheduler.store.models import ACTIVE_ALLOCATION_STATES


def record_heartbeats(conn: Connection, beats: dict[str, datetime]) -> list[str]:
    """Write many heartbeats at once; returns the nodes that were unreachable
    and are back."""
    if not beats:
        return []
    # Two statements with array parameters: the SQL text stays the same
    # whatever the number of nodes, so PostgreSQL parses it once.
    names, times = list(beats), list(beats.values())
    returned = conn.execute(
        text(
            "UPDATE nodes SET reachable = true, unreachable_since = NULL "
            "WHERE name = ANY(:names) AND NOT reachable RETURNING name"
        ),
        {"names": names},
    ).scalars()
    returned_names = list(returned)
    conn.execute(
        text(
            "UPDATE nodes SET last_heartbeat_at = beat.at FROM unnest("
            "CAST(:names AS text[]), CAST(:times AS timestamptz[])) AS beat(name, at) "
            "WHERE nodes.name = beat.name"
        ),
        {"names": names, "times": times},
    )
    return returned_names


def mark_unreachable(conn: Connection, silent_since: datetime, now: datetime) -> list[str]:
    """Nodes whose last heartbeat is older than silent_since become unreachable."""
    return list(
        conn.execute(
            update(nodes_t)
            .where(nodes_t.c.reachable.is_(True), nodes_t.c.last_heartbeat_at < silent_since)
            .values(reachable=False, unreachable_since=now)
            .returning(nodes_t.c.name)
        ).scalars()
    )


def allocations_to_move(
    conn: Connection, unreachable_before: datetime
) -> dict[tuple[str, bool], list[str]]:
    """Active allocations on nodes unreachable since before the cutoff, or
    draining: (node, reachable) -> allocation ids."""
    rows = conn.execute(
        select(nodes_t.c.name, nodes_t.c.reachable, allocations_t.c.id)
        # Every node a rank is on, not only rank 0's (allocations.node): a
        # gang whose second node dies must move too.
        .join(allocations_t, allocations_t.c.nodes.contains(array([nodes_t.c.name])))
        .where(allocations_t.c.state.in_(ACTIVE_ALLOCATION_STATES))
        .where(
            or_(
                and_(
                    nodes_t.c.reachable.is_(False),
                    nodes_t.c.unreachable_since < unreachable_before,
                ),
                nodes_t.c.admin_state == "draining",
            )
        )
    ).all()
    moved: dict[tuple[str, bool], list[str]] = defaultdict(list)
    for node, reachable, allocation_id in rows:
        moved[(node, reachable)].append(allocation_id)
    return dict(moved)


def set_agent_info(conn: Connection, name: str, info: dict[str, Any]) -> None:
    conn.execute(update(nodes_t).where(nodes_t.c.name == name).values(agent_info=info))


@dataclass(frozen=True)
class HealthChange:
    gpu_id: int
    uuid: str
    index: int
    health: str
    reasons: tuple[str, ...]
    was: str


def apply_gpu_health(
    conn: Connection, node: str, reports: dict[str, tuple[str, tuple[str, ...]]]
) -> list[HealthChange]:
    """Store reported health (uuid -> (health, reasons)) where it changed."""
    rows = conn.execute(
        select(gpus_t.c.id, gpus_t.c.uuid, gpus_t.c.index, gpus_t.c.health, gpus_t.c.health_reasons)
        .join(nodes_t, nodes_t.c.id == gpus_t.c.node_id)
        .where(nodes_t.c.name == node, gpus_t.c.uuid.in_(list(reports)))
        .with_for_update(of=gpus_t)
    ).all()
    changes = []
    for gpu_id, uuid, index, health, reasons in rows:
        new_health, new_reasons = reports[uuid]
        if (new_health, list(new_reasons)) == (health, list(reasons)):
            continue
        conn.execute(
            update(gpus_t)
            .where(gpus_t.c.id == gpu_id)
            .values(health=new_health, health_reasons=list(new_reasons))
        )
        changes.append(HealthChange(gpu_id, uuid, index, new_health, new_reasons, health))
    return changes


def active_allocations_on_gpus(conn: Connection, gpu_ids: list[int]) -> list[str]:
    if not gpu_ids:
        return []
    return list(
        conn.execute(
            select(claims_t.c.allocation_id).where(claims_t.c.gpu_id.in_(gpu_ids)).distinct()
        ).scalars()
    )


def active_allocations_on_node(conn: Connection, node: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(allocations_t)
        .where(allocations_t.c.nodes.contains([node]))
        .where(allocations_t.c.state.in_(ACTIVE_ALLOCATION_STATES))
        .order_by(allocations_t.c.created_at)
    ).mappings()
    return [dict(r) for r in rows]
