"""Allocation rows, their live GPU claims and their event history.

Functions take a Connection and never commit: the caller owns the
transaction (one per batch of requests or per loop tick).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Table,
    and_,
    delete,
    func,
    or_,
    select,
    text,
    update,
)

from scheduler.domain.errors import InvalidArgument, NotFound, quoted
from scheduler.domain.fleet import Claim
from scheduler.store.models import (
    AllocationEventRow,
    AllocationRow,
    GpuClaimRow,
    MigSlotRow,
)
from scheduler.store.records import AllocationEvent, AllocationRecord

allocations_t = cast(Table, AllocationRow.__table__)
claims_t = cast(Table, GpuClaimRow.__table__)
slots_t = cast(Table, MigSlotRow.__table__)
events_t = cast(Table, AllocationEventRow.__table__)

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
NOTIFY_CHANNEL = "gpupool"
# Replaced by the notifying transaction's id in a payload (allocator/capacity.py).
TXID_MARK = "@TXID@"


def delete_claims(conn: Connection, allocation_ids: Sequence[str]) -> list[tuple[str, Claim]]:
    """Remove the live claims of these allocations; returns what was freed, by allocation."""
    if not allocation_ids:
        return []
    rows = conn.execute(
        delete(claims_t)
        .where(claims_t.c.allocation_id.in_(list(allocation_ids)))
        .returning(
            claims_t.c.allocation_id,
            claims_t.c.gpu_id,
            claims_t.c.milli,
            claims_t.c.memory_mib,
            claims_t.c.mig_profile,
            claims_t.c.mig_start,
            claims_t.c.mig_size,
            claims_t.c.mig_compute,
        )
    ).all()
    return [
        (
            r.allocation_id,
            Claim(
                gpu_id=r.gpu_id,
                milli=r.milli,
                memory_mib=r.memory_mib,
                mig_profile=r.mig_profile,
                mig_start=r.mig_start,
                mig_size=r.mig_size,
                mig_compute=r.mig_compute,
            ),
        )
        for r in rows
    ]


def lock_allocations(conn: Connection, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Lock rows in id order (a fixed order, so two batches never deadlock)."""
    if not ids:
        return {}
    rows = conn.execute(
        select(allocations_t)
        .where(allocations_t.c.id.in_(sorted(set(ids))))
        .order_by(allocations_t.c.id)
        .with_for_update()
    ).mappings()
    return {row["id"]: dict(row) for row in rows}


def queue_order(conn: Connection, limit: int) -> list[AllocationRecord]:
    """Pending allocations in the order a pass tries them (read only)."""
    rows = conn.execute(
        select(allocations_t)
        .where(allocations_t.c.state == "pending")
        .order_by(allocations_t.c.priority.desc(), allocations_t.c.queue_seq)
        .limit(limit)
    ).mappings()
    return [AllocationRecord.from_mapping(row) for row in rows]


def notify(conn: Connection, payloads: Iterable[str]) -> None:
    """NOTIFY other replicas; delivered at commit, dropped on rollback.
    One statement for all payloads: one round trip on the commit path. The
    first TXID_MARK in a payload becomes this transaction's id (capacity.py)."""
    messages = list(payloads)
    if messages:
        conn.execute(
            text(
                "SELECT pg_notify(:c, regexp_replace(p, :mark, pg_current_xact_id()::text)) "
                "FROM unnest(CAST(:ps AS text[])) AS p"
            ),
            {"c": NOTIFY_CHANNEL, "ps": messages, "mark": TXID_MARK},
        )


def get_allocation(
    conn: Connection, allocation_id: str, with_events: bool = True
) -> AllocationRecord:
    row = (
        conn.execute(select(allocations_t).where(allocations_t.c.id == allocation_id))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"no allocation with id {quoted(allocation_id)}")
    events: tuple[AllocationEvent, ...] = ()
    if with_events:
        events = tuple(events_since(conn, allocation_id, 0))
    return AllocationRecord.from_mapping(row, events=events)


def events_since(conn: Connection, allocation_id: str, after_seq: int) -> list[AllocationEvent]:
    rows = conn.execute(
        select(events_t)
        .where(and_(events_t.c.allocation_id == allocation_id, events_t.c.seq > after_seq))
        .order_by(events_t.c.seq)
    ).mappings()
    return [AllocationEvent.from_mapping(row) for row in rows]


def recent_events(conn: Connection, limit: int) -> list[tuple[str, str, AllocationEvent]]:
    """The latest `limit` state changes of any allocation, newest first, as
    (allocation id, tenant, event): a backwards walk of the primary key."""
    rows = conn.execute(
        select(events_t, allocations_t.c.tenant)
        .join(allocations_t, allocations_t.c.id == events_t.c.allocation_id)
        .order_by(events_t.c.id.desc())
        .limit(limit)
    ).mappings()
    return [(r["allocation_id"], r["tenant"], AllocationEvent.from_mapping(r)) for r in rows]


def _encode_token(created_at: datetime, allocation_id: str) -> str:
    raw = f"{created_at.isoformat()}|{allocation_id}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(token: str) -> tuple[datetime, str]:
    try:
        created, allocation_id = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), allocation_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument("page_token is not one this API returned") from exc


def list_allocations(
    conn: Connection,
    tenant: str = "",
    state: str = "",
    node: str = "",
    page_size: int = 0,
    page_token: str = "",
    request_id: str = "",
) -> tuple[list[AllocationRecord], str]:
    """Newest first, keyset-paginated on (created_at, id)."""
    if page_size > MAX_PAGE_SIZE:
        raise InvalidArgument(f"page_size may be at most {MAX_PAGE_SIZE}, got {page_size}")
    size = page_size or DEFAULT_PAGE_SIZE
    query = select(allocations_t)
    if tenant:
        query = query.where(allocations_t.c.tenant == tenant)
    if state:
        query = query.where(allocations_t.c.state == state)
    if node:
        query = query.where(allocations_t.c.nodes.contains([node]))
    if request_id:
        query = query.where(allocations_t.c.request_id == request_id)
    if page_token:
        created, last_id = _decode_token(page_token)
        query = query.where(
            or_(
                allocations_t.c.created_at < created,
                and_(allocations_t.c.created_at == created, allocations_t.c.id < last_id),
            )
        )
    query = query.order_by(allocations_t.c.created_at.desc(), allocations_t.c.id.desc())
    rows = conn.execute(query.limit(size + 1)).mappings().all()
    records = [AllocationRecord.from_mapping(row) for row in rows[:size]]
    token = ""
    if len(rows) > size:
        token = _encode_token(records[-1].created_at, records[-1].id)
    return records, token


def record_checkpoint(
    conn: Connection, allocation_id: str, uri: str, at: datetime
) -> dict[str, Any] | None:
    """Store a holder's latest checkpoint; None when the allocation holds no GPUs."""
    row = (
        conn.execute(
            update(allocations_t)
            .where(allocations_t.c.id == allocation_id)
            .where(allocations_t.c.state.in_(("placed", "running", "preempting")))
            .values(checkpoint_uri=uri, last_checkpoint_at=at, updated_at=at)
            .returning(allocations_t)
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def running_below(
    conn: Connection, priority: int, classes: Sequence[str], borrowers: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Placed allocations of lower priority in these (preemptible) classes,
    and the `borrowers`' at that priority, each with its live claims under "claims"."""
    below = allocations_t.c.priority < priority
    if borrowers:
        below = or_(
            below,
            and_(allocations_t.c.priority == priority, allocations_t.c.tenant.in_(list(borrowers))),
        )
    rows = conn.execute(
        select(
            allocations_t.c.id,
            allocations_t.c.tenant,
            allocations_t.c.priority,
            allocations_t.c.priority_class,
            allocations_t.c.placed_at,
            allocations_t.c.last_checkpoint_at,
            claims_t.c.gpu_id,
            claims_t.c.milli,
            claims_t.c.memory_mib,
            claims_t.c.mig_profile,
            claims_t.c.mig_start,
            claims_t.c.mig_size,
            claims_t.c.mig_compute,
        )
        .join(claims_t, claims_t.c.allocation_id == allocations_t.c.id)
        .where(allocations_t.c.state.in_(("placed", "running")))
        .where(below)
        .where(allocations_t.c.priority_class.in_(list(classes)))
    ).mappings()
    by_id: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = by_id.setdefault(row["id"], {**row, "claims": []})
        entry["claims"].append(
            Claim(
                gpu_id=row["gpu_id"],
                milli=row["milli"],
                memory_mib=row["memory_mib"],
                mig_profile=row["mig_profile"],
                mig_start=row["mig_start"],
                mig_size=row["mig_size"],
                mig_compute=row["mig_compute"],
            )
        )
    return list(by_id.values())


_RESERVED_NODES = text(
    """
    WITH preemptors AS (
        SELECT DISTINCT p.id, p.priority
        FROM allocations v JOIN allocations p ON p.id = v.preempted_for
        WHERE v.state = 'preempting' AND p.state = 'pending'
    )
    SELECT DISTINCT n.node, p.id, p.priority
    FROM preemptors p
    JOIN allocations v ON v.preempted_for = p.id AND v.state IN ('preempting', 'pending')
    CROSS JOIN LATERAL unnest(
        v.nodes || ARRAY(SELECT b ->> 'node' FROM jsonb_array_elements(v.bindings) AS b)
    ) AS n(node)
    WHERE n.node <> ''
    """
)


def reserved_nodes(conn: Connection) -> dict[str, dict[str, int]]:
    """Nodes held for pending requests whose victims are checkpointing:
    node -> {pending request: its priority}.

    While any victim of a request still checkpoints, the nodes of all its
    victims stay held, also those of victims already requeued (their last
    bindings): a gang over several nodes must not lose the first node it
    freed to a requeued victim before the last one is free.
    """
    rows = conn.execute(_RESERVED_NODES).all()
    reserved: dict[str, dict[str, int]] = {}
    for node, preemptor_id, priority in rows:
        reserved.setdefault(node, {})[preemptor_id] = int(priority)
    return reserved


def preempting_for(conn: Connection, allocation_id: str) -> int:
    """How many victims are still checkpointing to make room for this allocation."""
    return int(
        conn.execute(
            select(func.count())
            .select_from(allocations_t)
            .where(allocations_t.c.state == "preempting")
            .where(allocations_t.c.preempted_for == allocation_id)
        ).scalar_one()
    )
