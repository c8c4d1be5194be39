"""Taking work off GPUs inside an allocator batch: release, requeue after a
failure or drain, and checkpoint-coordinated preemption."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from scheduler.allocator.batch import ACTIVE_STATES, TERMINAL_STATES, Batch
from scheduler.allocator.commands import Preempt, Release, Requeue, Revoke
from scheduler.domain.errors import FailedPrecondition, NotFound, PermissionDenied
from scheduler.store import allocations as store
from scheduler.store.records import AllocationRecord

RUNNING_STATES = ("placed", "running")


def _not_found(allocation_id: str) -> NotFound:
    return NotFound(f"no allocation with id {allocation_id!r}")


def apply_releases(batch: Batch, releases: Sequence[Release]) -> None:
    if not releases:
        return
    rows = batch.locked  # locked by the batch's opening read
    to_free: list[str] = []
    updates: list[dict[str, Any]] = []
    for command in releases:
        row = rows.get(command.allocation_id)
        if row is None:
            batch.results[id(command)] = _not_found(command.allocation_id)
            continue
        if command.tenant is not None and row["tenant"] != command.tenant:
            batch.results[id(command)] = PermissionDenied(
                f"allocation {row['id']} belongs to tenant {row['tenant']!r}, not "
                f"{command.tenant!r}: its tenant's token or an admin may release it"
            )
            continue
        if row["state"] not in TERMINAL_STATES:
            if row["state"] in ACTIVE_STATES:
                to_free.append(row["id"])
            was = row["state"]
            row.update(
                state="released", updated_at=batch.now, pending_reasons=[], message=command.reason
            )
            batch.event(row, "released", "RELEASED", f"{command.reason} (was {was})")
            updates.append(
                {
                    "b_id": row["id"],
                    "state": "released",
                    "updated_at": batch.now,
                    "pending_reasons": [],
                    "message": command.reason,
                    "preemption_deadline": None,
                    "event_count": row["event_count"],
                }
            )
        batch.results[id(command)] = AllocationRecord.from_mapping(row)
    # Nothing later in the batch reads these rows back: the claims go and the
    # rows change in the closing pipeline; the snapshot is freed from the
    # locked rows' bindings, which record exactly the claims they hold.
    batch.freed(rows, [(i, c) for i in to_free for c in batch.claims_of(rows[i])])
    batch.closing_writes.append(lambda: batch.sql.delete_claims_of(to_free))
    batch.closing_writes.append(lambda: batch.sql.update_rows(updates))


def apply_requeues(batch: Batch, requeues: Sequence[Requeue]) -> None:
    if not requeues:
        return
    rows = store.lock_allocations(batch.conn, [i for c in requeues for i in c.allocation_ids])
    moved: set[str] = set()
    updates: list[dict[str, Any]] = []
    for command in requeues:
        count = 0
        for allocation_id in command.allocation_ids:
            row = rows.get(allocation_id)
            if row is None or row["state"] not in ACTIVE_STATES or allocation_id in moved:
                continue
            state = "pending" if row["on_failure"] == "requeue" else "failed"
            reason = "REQUEUED" if state == "pending" else "FAILED"
            message = f"{'requeued' if state == 'pending' else 'failed'}: {command.reason}"
            moved.add(allocation_id)
            batch.event(row, state, reason, message)
            updates.append(
                {
                    "b_id": allocation_id,
                    "state": state,
                    "node": "",
                    "nodes": [],
                    "message": message,
                    "updated_at": batch.now,
                    "preemption_deadline": None,
                    "resume_from": row["checkpoint_uri"],
                    "event_count": row["event_count"],
                }
            )
            if state == "pending":
                batch.maybe_pending = True
                batch.waiting.add(row["gpu_models"])
            count += 1
        batch.results[id(command)] = count
    batch.freed(rows, store.delete_claims(batch.conn, sorted(moved)))
    batch.sql.update_rows(updates)


def ask_to_checkpoint(
    batch: Batch, row: dict[str, Any], grace_s: float, preempted_for: str, reason: str
) -> dict[str, Any]:
    """Turn one victim preempting: its holder is told to checkpoint by the
    deadline. Returns the row update; its claims stay until revocation."""
    deadline = batch.now + timedelta(seconds=grace_s)
    message = f"checkpoint and acknowledge by {deadline.isoformat()}: {reason}"
    row["state"] = "preempting"
    batch.event(row, "preempting", "PREEMPTION_REQUESTED", message, deadline=deadline)
    batch.touched_nodes.update(row["nodes"] or [row["node"]])
    return {
        "b_id": row["id"],
        "state": "preempting",
        "preemption_deadline": deadline,
        "preempted_for": preempted_for,
        "message": message,
        "updated_at": batch.now,
        "event_count": row["event_count"],
    }


def apply_preempts(batch: Batch, preempts: Sequence[Preempt]) -> None:
    """Victims turn preempting: their holders are told to checkpoint by the
    deadline; their claims stay until they acknowledge or the deadline ends."""
    if not preempts:
        return
    rows = store.lock_allocations(batch.conn, [i for c in preempts for i in c.allocation_ids])
    updates: list[dict[str, Any]] = []
    for command in preempts:
        count = 0
        for allocation_id in command.allocation_ids:
            row = rows.get(allocation_id)
            if row is None:
                batch.results[id(command)] = _not_found(allocation_id)
                break
            if row["state"] not in RUNNING_STATES:
                continue
            updates.append(
                ask_to_checkpoint(
                    batch, row, command.grace_s, command.preempted_for, command.reason
                )
            )
            count += 1
        batch.results.setdefault(id(command), count)
    batch.sql.update_rows(updates)


def apply_revokes(batch: Batch, revokes: Sequence[Revoke]) -> None:
    """Preempting allocations leave their GPUs and wait again, to resume from
    their latest checkpoint when placed."""
    if not revokes:
        return
    rows = store.lock_allocations(batch.conn, [c.allocation_id for c in revokes])
    revoked: list[str] = []
    updates: list[dict[str, Any]] = []
    for command in revokes:
        row = rows.get(command.allocation_id)
        if row is None:
            batch.results[id(command)] = _not_found(command.allocation_id)
            continue
        if row["state"] != "preempting" or row["id"] in revoked:
            if command.how == "acknowledged" and row["state"] != "preempting":
                batch.results[id(command)] = FailedPrecondition(
                    f"allocation {row['id']} is {row['state']}, not preempting: "
                    "nothing to acknowledge"
                )
            else:
                batch.results[id(command)] = AllocationRecord.from_mapping(row)
            continue
        checkpoint = command.checkpoint_uri or row["checkpoint_uri"]
        columns: dict[str, Any] = {
            "state": "pending",
            "node": "",
            "nodes": [],
            "resume_from": checkpoint,
            "checkpoint_uri": checkpoint,
            "preemption_deadline": None,
            "preemption_count": row["preemption_count"] + 1,
            "updated_at": batch.now,
        }
        if command.checkpoint_uri:
            columns["last_checkpoint_at"] = batch.now
        where = f"; resumes from {checkpoint}" if checkpoint else "; no checkpoint: restarts"
        how = f"{command.how} by {command.by}" if command.by else command.how
        columns["message"] = f"revoked ({how}){where}"
        row.update(columns)
        batch.event(row, "pending", "REVOKED", columns["message"])
        updates.append({"b_id": row["id"], **columns, "event_count": row["event_count"]})
        revoked.append(row["id"])
        batch.revocations.append(command.how)
        batch.results[id(command)] = AllocationRecord.from_mapping(row)
    if revoked:
        batch.maybe_pending = True
        for allocation_id in revoked:
            batch.waiting.add(rows[allocation_id]["gpu_models"])
    batch.freed(rows, store.delete_claims(batch.conn, revoked))
    batch.sql.update_rows(updates)
