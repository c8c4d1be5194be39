"""Making room for a request that does not fit: choose the cheapest victims
(scheduler/preemption, pure) and ask them to checkpoint, inside a batch."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from scheduler.allocator.batch import Batch
from scheduler.allocator.revoking import ask_to_checkpoint
from scheduler.domain.priorities import (
    PRIORITY_CLASSES,
    lowest_preemptible_value,
    preemptible_class_names,
)
from scheduler.domain.quotas import is_borrowing, is_entitled
from scheduler.domain.requests import PlacementRequest
from scheduler.preemption import RunningAllocation, choose_victims
from scheduler.store import allocations as store


def _epoch(value: datetime | None, default: float) -> float:
    return value.timestamp() if value is not None else default


def _running(row: dict[str, Any], now: float) -> RunningAllocation:
    started = _epoch(row["placed_at"], now)
    protection = PRIORITY_CLASSES[row["priority_class"]].min_runtime_s
    return RunningAllocation(
        id=row["id"],
        priority=row["priority"],
        preemptible=True,
        protected_until=started + protection,
        claims=tuple(row["claims"]),
        last_checkpoint_at=_epoch(row["last_checkpoint_at"], started),
        started_at=started,
        tenant=row["tenant"],
    )


def make_room(
    batch: Batch, row: dict[str, Any], request: PlacementRequest, stored: bool = True
) -> str | None:
    """If preempting lower-priority work lets `row` fit, ask those victims to
    checkpoint and return what `row` now waits for; None when nothing helps.
    `stored`: False for a request new in this batch (nothing checkpoints for it yet)."""
    entitled = is_entitled(batch.quotas, batch.usage, row["tenant"])
    if request.priority <= lowest_preemptible_value() and not entitled:
        return None
    if stored:
        waiting = store.preempting_for(batch.conn, row["id"])
        if waiting:
            return f"waiting for {waiting} preempted allocation(s) to checkpoint"
    now = batch.now.timestamp()
    # Borrowed capacity is reclaimed for a tenant below its guarantee, even
    # from work of the same priority: only the borrowers' work at that priority.
    borrowers = (
        sorted(t for t in batch.usage if is_borrowing(batch.quotas, batch.usage, t))
        if entitled
        else []
    )
    running = []
    for candidate in store.running_below(
        batch.conn, request.priority, preemptible_class_names(), borrowers
    ):
        allocation = _running(candidate, now)
        if allocation.tenant in borrowers:
            lowered = min(allocation.priority, request.priority - 1)
            allocation = replace(allocation, priority=lowered)
        running.append(allocation)
    # Nothing it may preempt: no need to search (or place) at all.
    choice = (
        choose_victims(batch.snapshot, request, running, now, batch.config) if running else None
    )
    if choice is None or not choice.victims:
        batch.no_room[(row["tenant"], request)] = True
        return None
    victims = store.lock_allocations(batch.conn, list(choice.victims))
    reason = f"making room for {row['priority_class']} allocation {row['id']}"
    updates = []
    for victim in victims.values():
        grace = PRIORITY_CLASSES[victim["priority_class"]].grace_s
        updates.append(ask_to_checkpoint(batch, victim, grace, row["id"], reason))
        for node in victim["nodes"] or [victim["node"]]:
            batch.reserve_node(node, row["id"], request.priority)
    batch.sql.update_rows(updates)
    lost = f"{choice.lost_gpu_seconds:.0f} GPU-seconds of work since their checkpoints"
    return f"preempting {len(victims)} lower-priority allocation(s) ({lost})"
