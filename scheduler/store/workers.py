"""Worker columns of allocations: rendezvous ports, per-rank status, MIG
device ids. Functions take a Connection; the caller owns the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from scheduler.store.allocations import allocations_t, events_t
from scheduler.store.fleet import nodes_t
from scheduler.store.models import ACTIVE_ALLOCATION_STATES


def node_address(conn: Connection, node: str) -> str:
    """What other nodes dial to reach `node`: its hostname, else its name."""
    hostname = conn.execute(select(nodes_t.c.hostname).where(nodes_t.c.name == node)).scalar()
    return str(hostname or node)


def assign_rendezvous(
    conn: Connection, allocation_id: str, node: str, ports: range
) -> tuple[str, int] | None:
    """Give a live allocation the lowest port of `ports` that no other live
    allocation on `node` holds. The partial unique index is the judge: a
    concurrent winner makes us try the next port. None when the range is full."""
    taken = set(
        conn.execute(
            select(allocations_t.c.rendezvous_port).where(
                allocations_t.c.node == node,
                allocations_t.c.rendezvous_port.is_not(None),
                allocations_t.c.state.in_(ACTIVE_ALLOCATION_STATES),
            )
        ).scalars()
    )
    address = node_address(conn, node)
    for port in ports:
        if port in taken:
            continue
        try:
            with conn.begin_nested():
                row = conn.execute(
                    update(allocations_t)
                    .where(
                        allocations_t.c.id == allocation_id,
                        allocations_t.c.node == node,
                        allocations_t.c.rendezvous_port.is_(None),
                        allocations_t.c.state.in_(ACTIVE_ALLOCATION_STATES),
                    )
                    .values(rendezvous_port=port, rendezvous_addr=address)
                    .returning(allocations_t.c.rendezvous_port)
                ).first()
        except IntegrityError:
            continue
        if row is not None:
            return address, port
        # Someone else (another node's desired state) assigned it first.
        current = conn.execute(
            select(allocations_t.c.rendezvous_addr, allocations_t.c.rendezvous_port).where(
                allocations_t.c.id == allocation_id
            )
        ).first()
        if current is None or current.rendezvous_port is None:
            return None
        return str(current.rendezvous_addr), int(current.rendezvous_port)
    return None


def lock_active(conn: Connection, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Live allocations among `ids`, locked in id order (no deadlocks)."""
    if not ids:
        return {}
    rows = conn.execute(
        select(allocations_t)
        .where(allocations_t.c.id.in_(sorted(set(ids))))
        .where(allocations_t.c.state.in_(ACTIVE_ALLOCATION_STATES))
        .order_by(allocations_t.c.id)
        .with_for_update()
    ).mappings()
    return {row["id"]: dict(row) for row in rows}


def save_columns(conn: Connection, allocation_id: str, **columns: Any) -> None:
    conn.execute(update(allocations_t).where(allocations_t.c.id == allocation_id).values(columns))


def add_event(
    conn: Connection, row: dict[str, Any], state: str, reason: str, message: str, at: datetime
) -> None:
    """Append to the history; bumps row["event_count"] (save it with the row)."""
    row["event_count"] = row["event_count"] + 1
    conn.execute(
        insert(events_t).values(
            allocation_id=row["id"],
            seq=row["event_count"],
            state=state,
            reason=reason,
            message=message,
            at=at,
        )
    )
