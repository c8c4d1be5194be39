"""Placing work inside an allocator batch: new requests and the pending queue."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from scheduler.allocator.batch import Batch, new_allocation_id
from scheduler.allocator.commands import Allocate
from scheduler.allocator.preempting import make_room
from scheduler.allocator.specs import spec_from_row, with_auto_layout
from scheduler.allocator.waiting import WaitingModels
from scheduler.domain.allocation import AllocationSpec
from scheduler.domain.catalogue import MIG_COMPUTE_SLICES
from scheduler.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    GpupoolError,
    ResourceExhausted,
)
from scheduler.domain.quotas import fair_order
from scheduler.domain.requests import PlacementRequest
from scheduler.placement import Placement, PlacementOutcome
from scheduler.store.records import AllocationRecord

# Rows one pass reads at most, and how long it may run (preemptions weighed:
# batch.MAKE_ROOM_PER_BATCH).
PASS_LIMIT = 200
PASS_BUDGET_S = 0.025


def nominal_units(row: dict[str, Any]) -> float:
    """A pending request's size before it has a GPU model: GPU-equivalents."""
    if row["kind"] == "whole":
        return float(row["gpu_count"])
    if row["kind"] == "fraction":
        return float(row["milli"]) / 1000
    compute = row["mig_profile"].split("g", 1)[0]
    return int(compute) / MIG_COMPUTE_SLICES if compute.isdigit() else 0.0


def reasons_json(outcome: PlacementOutcome) -> list[dict[str, Any]]:
    return [{"plugin": r.plugin, "reason": r.reason, "count": r.count} for r in outcome.reasons]


def summarise(outcome: PlacementOutcome) -> str:
    if not outcome.reasons:
        return "no candidate GPU"
    # "not enough free memory (12)"; the unschedulable verdict stands alone.
    return "; ".join(
        r.reason if r.plugin == "Unschedulable" else f"{r.reason} ({r.count})"
        for r in outcome.reasons[:3]
    )


def _no_wait_error(spec: AllocationSpec, outcome: PlacementOutcome) -> GpupoolError | None:
    if not spec.no_wait:
        return None
    if outcome.unschedulable:
        return FailedPrecondition(
            f"no GPU in this fleet can ever hold this request: {summarise(outcome)}"
        )
    return ResourceExhausted(f"nothing free fits this request now: {summarise(outcome)}")


def _placed_columns(
    batch: Batch, row: dict[str, Any], placement: Placement, after_wait: bool
) -> dict[str, Any]:
    """Reserve the placement and return the columns a placed row gets."""
    batch.reserve(row["id"], placement.claims, row["tenant"])
    message = f"placed on {', '.join(placement.nodes)}"
    if after_wait:
        message += " after waiting"
    if row.get("resume_from"):
        message += f"; resume from {row['resume_from']}"
    batch.event(row, "placed", "PLACED", message)
    return {
        "state": "placed",
        "bindings": batch.bindings(placement.claims),
        "node": placement.node,
        "nodes": list(placement.nodes),
        "pending_reasons": [],
        "unschedulable": False,
        "message": message,
        "updated_at": batch.now,
        "placed_at": batch.now,
        "event_count": row["event_count"],
    }


def _new_row(batch: Batch, spec: AllocationSpec, digest: str) -> dict[str, Any]:
    demand = vars(spec.demand)
    return {
        "id": new_allocation_id(),
        "tenant": spec.tenant,
        "request_id": spec.request_id,
        "request_hash": digest,
        "kind": spec.kind,
        "gpu_count": demand.get("count", 0),
        "milli": demand.get("milli", 0),
        "memory_mib": demand.get("memory_mib", 0),
        "mig_profile": demand.get("profile", ""),
        "gpu_models": list(spec.gpu_models),
        "priority_class": spec.priority_class,
        "priority": spec.priority,
        "workload_class": spec.workload_class,
        "model": spec.model,
        "labels": dict(spec.labels),
        "on_failure": spec.on_failure,
        "layout": spec.layout.as_dict() if spec.layout else None,
        "model_spec": spec.model_spec.as_dict() if spec.model_spec else None,
        "layout_choice": spec.layout_choice,
        "pending_reasons": [],
        "unschedulable": False,
        "bindings": [],
        "node": "",
        "nodes": [],
        "message": "",
        "placed_at": None,
        "created_at": batch.now,
        "updated_at": batch.now,
        "event_count": 0,
    }


def apply_pending_pass(batch: Batch, everything: bool) -> int:
    """Place what waits, in priority then arrival order; returns how many.

    A pass looks only at what could fit now: after a batch that freed
    capacity, the requests that may use the GPU models it freed; after the
    fleet itself changed (or when asked to, `everything`), every request,
    those marked unschedulable too. Identical requests are tried once, at
    most MAKE_ROOM_PER_BATCH preemptions are weighed, and a pass stops after
    PASS_BUDGET_S, so it never holds new requests up for long.
    """
    batch.passes_run += 1
    everything = everything or batch.shape_changed
    models = None if everything else sorted(batch.freed_models)
    rows = batch.sql.pending_candidates(PASS_LIMIT, models, everything)

    if len({r["tenant"] for r in rows}) > 1:
        # Within a priority, tenants take turns by fair share.
        rows = fair_order(
            rows,
            priority_of=lambda r: int(r["priority"]),
            tenant_of=lambda r: str(r["tenant"]),
            units_of=nominal_units,
            quotas=batch.quotas,
            usage=batch.usage,
        )
    failed: dict[PlacementRequest, PlacementOutcome] = {}
    placed_updates: list[dict[str, Any]] = []
    reason_updates: list[dict[str, Any]] = []
    still_waiting = WaitingModels.nothing()  # what this pass leaves waiting, and could place
    started = time.perf_counter()
    for reached, row in enumerate(rows):
        if time.perf_counter() - started > PASS_BUDGET_S:
            # What this pass did not reach waits for the next freed capacity or
            # the queue loop's periodic pass (background/loops.PendingQueueLoop).
            for later in rows[reached:]:
                if not later["unschedulable"]:
                    still_waiting.add(later["gpu_models"])
            break
        request = batch.placement_request(spec_from_row(row), row["id"])
        # The snapshot only shrinks during a pass: a request that failed fails again.
        outcome = failed.get(request) or batch.place(request)
        if outcome.placement is None:
            failed[request] = outcome
            reasons = reasons_json(outcome)
            message = summarise(outcome)
            if not outcome.unschedulable:
                still_waiting.add(row["gpu_models"])
                if not batch.may_weigh(row["tenant"], request):
                    continue  # preemption not weighed for it this pass: its reasons stand
                message = make_room(batch, row, request) or message
            if (reasons, outcome.unschedulable, message) != (
                row["pending_reasons"],
                row["unschedulable"],
                row["message"],
            ):
                reason_updates.append(
                    {
                        "b_id": row["id"],
                        "pending_reasons": reasons,
                        "unschedulable": outcome.unschedulable,
                        "message": message,
                    }
                )
            continue
        placed_updates.append(
            {"b_id": row["id"], **_placed_columns(batch, row, outcome.placement, True)}
        )
    # Nothing later in the batch reads these rows back: write them with the
    # batch's closing pipeline instead of a round trip of their own.
    batch.closing_writes.append(lambda: batch.sql.update_rows(placed_updates + reason_updates))
    if everything and len(rows) < PASS_LIMIT:
        # This pass saw the whole queue: what still waits, and for which models.
        batch.waiting = still_waiting
        batch.maybe_pending = len(rows) > len(placed_updates)
    return len(placed_updates)


def apply_allocates(batch: Batch, allocates: Sequence[Allocate]) -> None:
    """New requests: answer retries from what is stored, place the rest or
    store them pending with their reasons."""
    if not allocates:
        return
    existing = batch.found  # looked up by the batch's opening read
    batch.asking_tenants = {c.spec.tenant for c in allocates}
    in_batch: dict[tuple[str, str], tuple[str, Allocate]] = {}
    failed: dict[PlacementRequest, PlacementOutcome] = {}
    followers: list[tuple[Allocate, Allocate]] = []
    for command in allocates:
        spec = command.spec
        key = (spec.tenant, spec.request_id)
        digest = spec.body_hash()
        first = existing.get(key)
        if first is not None or key in in_batch:
            first_digest = first["request_hash"] if first else in_batch[key][0]
            if first_digest != digest:
                batch.results[id(command)] = AlreadyExists(
                    f"request_id {spec.request_id!r} of tenant {spec.tenant!r} was already "
                    "used for a different request; use a new request_id"
                )
            elif first is not None:
                batch.results[id(command)] = AllocationRecord.from_mapping(first)
            else:
                followers.append((command, in_batch[key][1]))
            continue
        if spec.needs_auto_layout:
            try:
                spec = with_auto_layout(spec, batch.snapshot, batch.config.generation_policy)
            except GpupoolError as refused:
                batch.results[id(command)] = refused
                continue
        row = _new_row(batch, spec, digest)
        request = batch.placement_request(spec, row["id"])
        outcome = failed.get(request) or batch.place(request)
        if outcome.placement is None:
            failed[request] = outcome
            error = _no_wait_error(spec, outcome)
            if error is None and not batch.may_wait(spec.tenant):
                error = ResourceExhausted(
                    f"tenant {spec.tenant!r} already has {batch.max_pending_per_tenant} "
                    "allocations waiting, the most it may have; nothing free fits this one "
                    f"now ({summarise(outcome)}): release or wait before asking again"
                )
            if error is not None:
                batch.results[id(command)] = error
                continue
            # A flood of identical requests weighs preemption once per batch.
            weigh = not outcome.unschedulable and batch.may_weigh(spec.tenant, request)
            making_room = make_room(batch, row, request, stored=False) if weigh else None
            row.update(
                state="pending",
                pending_reasons=reasons_json(outcome),
                unschedulable=outcome.unschedulable,
                message=making_room or summarise(outcome),
            )
            batch.event(row, "pending", "PENDING", f"waiting: {row['message']}")
            batch.maybe_pending = True
            if not outcome.unschedulable:
                batch.waiting.add(spec.gpu_models)
        else:
            row.update(_placed_columns(batch, row, outcome.placement, after_wait=False))
        in_batch[key] = (digest, command)
        batch.new_rows.append(row)
        batch.results[id(command)] = AllocationRecord.from_mapping(row)
    for follower, leader in followers:
        batch.results[id(follower)] = batch.results[id(leader)]
