"""The commit path: allocate, release and the pending-queue pass, in batches.

One worker thread per scheduler process owns the in-memory fleet snapshot.
RPC threads hand it commands and wait; it takes whatever has queued up and
runs it as one database transaction (releases first, then the pending queue,
then new requests), so throughput does not cost one round trip per request.
PostgreSQL's constraints stay the judge: if another replica got there first
the transaction fails, the snapshot is reloaded and the commands are retried
one by one.
"""

from __future__ import annotations

import gc
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from scheduler.domain.allocation import AllocationSpec
from scheduler.domain.catalogue import CATALOGUE
from scheduler.domain.clock import Clock
from scheduler.domain.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    GpupoolError,
    NotFound,
    ResourceExhausted,
)
from scheduler.domain.fleet import Claim, FleetSnapshot
from scheduler.domain.requests import PlacementRequest
from scheduler.placement import PlacementConfig, PlacementOutcome, place
from scheduler.services.notifier import ChangeNotifier
from scheduler.services.specs import spec_from_row
from scheduler.store import allocations as store
from scheduler.store.fleet import load_snapshot
from scheduler.store.records import AllocationRecord

log = logging.getLogger(__name__)

MAX_BATCH = 256
PENDING_PASS_LIMIT = 2000
NOTIFY_PAYLOAD_LIMIT = 7000  # PostgreSQL caps a payload at 8000 bytes
TERMINAL_STATES = ("released", "failed")
ACTIVE_STATES = ("placed", "running", "preempting")


@dataclass
class _Command:
    future: Future[Any] = field(default_factory=Future, init=False)


@dataclass
class _Allocate(_Command):
    spec: AllocationSpec


@dataclass
class _Release(_Command):
    allocation_id: str
    reason: str


@dataclass
class _PendingPass(_Command):
    pass


@dataclass
class _Requeue(_Command):
    """Take placed allocations off their GPUs (failure, drain): requeue or
    fail each per its on_failure policy."""

    allocation_ids: tuple[str, ...]
    reason: str


@dataclass
class _Batch:
    """What one transaction writes, and what to tell whom after commit."""

    new_rows: list[dict[str, Any]] = field(default_factory=list)
    new_claims: list[tuple[str, Claim]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    changed_ids: list[str] = field(default_factory=list)
    results: dict[int, Any] = field(default_factory=dict)  # id(command) -> record or error
    freed_capacity: bool = False
    stored_pending: bool = False
    touched_nodes: set[str] = field(default_factory=set)  # their agents need a new desired state


def new_allocation_id() -> str:
    return "a-" + secrets.token_hex(8)


def _reasons_json(outcome: PlacementOutcome) -> list[dict[str, Any]]:
    return [{"plugin": r.plugin, "reason": r.reason, "count": r.count} for r in outcome.reasons]


def _summarise(outcome: PlacementOutcome) -> str:
    if not outcome.reasons:
        return "no candidate GPU"
    # "not enough free memory (12)"; the unschedulable verdict stands alone.
    return "; ".join(
        r.reason if r.plugin == "Unschedulable" else f"{r.reason} ({r.count})"
        for r in outcome.reasons[:3]
    )


class Allocator:
    def __init__(
        self,
        engine: Engine,
        notifier: ChangeNotifier,
        clock: Clock,
        replica_id: str,
        is_leader: Callable[[], bool] = lambda: True,
        placement_config: PlacementConfig | None = None,
    ) -> None:
        self._engine = engine
        self._notifier = notifier
        self._clock = clock
        self._replica_id = replica_id
        self._is_leader = is_leader
        self._config = placement_config or PlacementConfig()
        self._queue: queue.Queue[_Command] = queue.Queue()
        self._snapshot = FleetSnapshot()
        self._stale = True
        self._maybe_pending = True
        self._pass_queued = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="allocator", daemon=True)
        # Called after each commit with the nodes whose allocations changed.
        self.on_nodes_changed: Callable[[set[str]], None] = lambda nodes: None

    # -- public API (called from RPC threads) ---------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)

    def allocate(self, spec: AllocationSpec, timeout: float = 30.0) -> AllocationRecord:
        return self._submit(_Allocate(spec), timeout)  # type: ignore[no-any-return]

    def release(
        self, allocation_id: str, reason: str = "released by the holder"
    ) -> AllocationRecord:
        return self._submit(_Release(allocation_id, reason), 30.0)  # type: ignore[no-any-return]

    def place_pending(self) -> int:
        """Run one pass over the pending queue now; returns how many were placed."""
        return self._submit(_PendingPass(), 60.0)  # type: ignore[no-any-return]

    def requeue(self, allocation_ids: Sequence[str], reason: str) -> int:
        """Returns how many allocations were moved off their GPUs.

        Mark the snapshot stale first if the cause (an unhealthy GPU, an
        unreachable or draining node) is new, so nothing lands there again.
        """
        if not allocation_ids:
            return 0
        return self._submit(_Requeue(tuple(allocation_ids), reason), 60.0)  # type: ignore[no-any-return]

    def place_pending_if_leader(self) -> None:
        """After a fleet change: the leader runs the queue before answering,
        other replicas leave it to the leader (it hears their NOTIFY)."""
        if self._is_leader():
            self.place_pending()

    def request_pending_pass(self) -> None:
        """Ask for a pass without waiting for it; coalesces repeated requests."""
        if self._pass_queued.is_set():
            return
        self._pass_queued.set()
        self._queue.put(_PendingPass())

    def mark_stale(self, pending_may_exist: bool = True) -> None:
        """The fleet changed elsewhere: reload the snapshot before the next batch."""
        self._stale = True
        if pending_may_exist:
            self._maybe_pending = True

    # -- worker ---------------------------------------------------------------

    def _submit(self, command: _Command, timeout: float) -> Any:
        if self._stopped.is_set():
            raise Aborted("the scheduler is shutting down; retry against another replica")
        self._queue.put(command)
        return command.future.result(timeout=timeout)

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._run_batch(batch)

    def _run_batch(self, commands: Sequence[_Command]) -> None:
        if any(isinstance(c, _PendingPass) for c in commands):
            self._pass_queued.clear()
        for attempt in range(3):
            try:
                if self._stale:
                    self._reload()
                batch = self._execute(commands)
            except (IntegrityError, DBAPIError) as exc:
                # Another replica took the capacity this snapshot thought free
                # (or the connection failed): nothing was written; start over.
                log.info("batch of %d lost a race (%s); reloading", len(commands), exc.orig)
                self._stale = True
                if len(commands) > 1:
                    for command in commands:
                        self._run_batch([command])
                    return
                time.sleep(0.01 * (attempt + 1))
                continue
            except Exception as exc:  # a bug: fail these requests, keep serving
                log.exception("allocator batch failed")
                self._stale = True
                for command in commands:
                    if not command.future.done():
                        command.future.set_exception(exc)
                return
            self._finish(commands, batch)
            return
        for command in commands:
            command.future.set_exception(
                Aborted("lost the race for capacity three times; retry the request")
            )

    def _reload(self) -> None:
        with self._engine.connect() as conn:
            self._snapshot = load_snapshot(conn)
        self._stale = False
        # The snapshot is long-lived: keep the collector from rescanning it
        # on every cycle (cuts placement's tail latency).
        gc.collect()
        gc.freeze()

    def _execute(self, commands: Sequence[_Command]) -> _Batch:
        batch = _Batch()
        try:
            with self._engine.begin() as conn:
                releases = [c for c in commands if isinstance(c, _Release)]
                allocates = [c for c in commands if isinstance(c, _Allocate)]
                self._apply_releases(conn, releases, batch)
                self._apply_requeues(conn, [c for c in commands if isinstance(c, _Requeue)], batch)
                wants_pass = any(isinstance(c, _PendingPass) for c in commands)
                # The leader places waiting work as soon as capacity frees,
                # before newcomers in the same batch can take it.
                freed_for_queue = batch.freed_capacity and self._maybe_pending
                if wants_pass or (freed_for_queue and self._is_leader()):
                    placed = self._apply_pending_pass(conn, batch)
                    for c in commands:
                        if isinstance(c, _PendingPass):
                            batch.results[id(c)] = placed
                self._apply_allocates(conn, allocates, batch)
                store.insert_allocations(conn, batch.new_rows)
                store.insert_claims(conn, batch.new_claims)
                store.insert_events(conn, batch.events)
                store.notify(conn, self._payloads(batch))
        except BaseException:
            self._stale = True  # the snapshot holds reservations that were rolled back
            raise
        return batch

    def _finish(self, commands: Sequence[_Command], batch: _Batch) -> None:
        if batch.stored_pending:
            self._maybe_pending = True
        for command in commands:
            result = batch.results.get(id(command))
            if isinstance(result, BaseException):
                command.future.set_exception(result)
            else:
                command.future.set_result(result)
        self._notifier.publish(batch.changed_ids)
        if batch.touched_nodes:
            self.on_nodes_changed(batch.touched_nodes)

    def _payloads(self, batch: _Batch) -> list[str]:
        payloads = []
        if batch.freed_capacity or batch.new_claims:
            payloads.append(f"capacity:{self._replica_id}:")
        if batch.touched_nodes:
            payloads.append(
                f"nodes:{self._replica_id}:{','.join(sorted(batch.touched_nodes))}"[
                    :NOTIFY_PAYLOAD_LIMIT
                ]
            )
        prefix = f"alloc:{self._replica_id}:"
        chunk: list[str] = []
        size = len(prefix)
        for allocation_id in batch.changed_ids:
            if size + len(allocation_id) + 1 > NOTIFY_PAYLOAD_LIMIT:
                payloads.append(prefix + ",".join(chunk))
                chunk, size = [], len(prefix)
            chunk.append(allocation_id)
            size += len(allocation_id) + 1
        if chunk:
            payloads.append(prefix + ",".join(chunk))
        return payloads

    # -- the three kinds of work ----------------------------------------------

    def _event(self, batch: _Batch, row: dict[str, Any], state: str, message: str) -> None:
        row["event_count"] = row.get("event_count", 0) + 1
        batch.events.append(
            {
                "allocation_id": row["id"],
                "seq": row["event_count"],
                "state": state,
                "message": message,
                "at": self._clock.now(),
            }
        )
        batch.changed_ids.append(row["id"])

    def _apply_releases(self, conn: Any, releases: Sequence[_Release], batch: _Batch) -> None:
        if not releases:
            return
        rows = store.lock_allocations(conn, [c.allocation_id for c in releases])
        now = self._clock.now()
        to_free: list[str] = []
        updates: list[dict[str, Any]] = []
        for command in releases:
            row = rows.get(command.allocation_id)
            if row is None:
                batch.results[id(command)] = NotFound(
                    f"no allocation with id {command.allocation_id!r}"
                )
                continue
            if row["state"] not in TERMINAL_STATES:
                if row["state"] in ACTIVE_STATES:
                    to_free.append(row["id"])
                was = row["state"]
                row.update(
                    state="released", updated_at=now, pending_reasons=[], message=command.reason
                )
                self._event(batch, row, "released", f"{command.reason} (was {was})")
                updates.append(
                    {
                        "b_id": row["id"],
                        "state": "released",
                        "updated_at": now,
                        "pending_reasons": [],
                        "message": command.reason,
                        "event_count": row["event_count"],
                    }
                )
            batch.results[id(command)] = AllocationRecord.from_mapping(row)
        freed = store.delete_claims(conn, to_free)
        store.apply_updates(conn, updates)
        if freed:
            batch.touched_nodes.update(self._snapshot.gpus[c.gpu_id].node for c in freed)
            self._snapshot.release(freed)
            batch.freed_capacity = True

    def _apply_requeues(self, conn: Any, requeues: Sequence[_Requeue], batch: _Batch) -> None:
        if not requeues:
            return
        rows = store.lock_allocations(conn, [i for c in requeues for i in c.allocation_ids])
        now = self._clock.now()
        moved: dict[str, str] = {}  # allocation id -> new state
        updates: dict[str, list[dict[str, Any]]] = {"pending": [], "failed": []}
        for command in requeues:
            count = 0
            for allocation_id in command.allocation_ids:
                row = rows.get(allocation_id)
                if row is None or row["state"] not in ACTIVE_STATES or allocation_id in moved:
                    continue
                state = "pending" if row["on_failure"] == "requeue" else "failed"
                verb = "requeued" if state == "pending" else "failed"
                message = f"{verb}: {command.reason}"
                moved[allocation_id] = state
                self._event(batch, row, state, message)
                updates[state].append(
                    {
                        "b_id": allocation_id,
                        "state": state,
                        "node": "",
                        "message": message,
                        "updated_at": now,
                        "event_count": row["event_count"],
                    }
                )
                count += 1
            batch.results[id(command)] = count
        freed = store.delete_claims(conn, list(moved))
        for group in updates.values():
            store.apply_updates(conn, group)
        if freed:
            batch.touched_nodes.update(self._snapshot.gpus[c.gpu_id].node for c in freed)
            self._snapshot.release(freed)
            batch.freed_capacity = True
        if "pending" in moved.values():
            self._maybe_pending = True

    def _apply_pending_pass(self, conn: Any, batch: _Batch) -> int:
        rows = store.pending_queue(conn, PENDING_PASS_LIMIT)
        if len(rows) < PENDING_PASS_LIMIT:
            self._maybe_pending = bool(rows)
        now = self._clock.now()
        failed: dict[PlacementRequest, PlacementOutcome] = {}
        placed_updates: list[dict[str, Any]] = []
        reason_updates: list[dict[str, Any]] = []
        for row in rows:
            request = spec_from_row(row).placement_request()
            outcome = failed.get(request) or place(self._snapshot, request, self._config)
            if outcome.placement is None:
                # The snapshot only shrinks during a pass: the same request fails again.
                failed[request] = outcome
                reasons = _reasons_json(outcome)
                if (
                    reasons != row["pending_reasons"]
                    or outcome.unschedulable != row["unschedulable"]
                ):
                    reason_updates.append(
                        {
                            "b_id": row["id"],
                            "pending_reasons": reasons,
                            "unschedulable": outcome.unschedulable,
                        }
                    )
                continue
            claims = outcome.placement.claims
            self._snapshot.reserve(claims)
            batch.new_claims.extend((row["id"], c) for c in claims)
            batch.touched_nodes.add(outcome.placement.node)
            bindings = self._bindings(claims)
            message = f"placed on {outcome.placement.node} after waiting"
            self._event(batch, row, "placed", message)
            placed_updates.append(
                {
                    "b_id": row["id"],
                    "state": "placed",
                    "bindings": bindings,
                    "node": outcome.placement.node,
                    "pending_reasons": [],
                    "unschedulable": False,
                    "message": message,
                    "updated_at": now,
                    "event_count": row["event_count"],
                }
            )
        store.apply_updates(conn, placed_updates)
        store.apply_updates(conn, reason_updates)
        return len(placed_updates)

    def _apply_allocates(self, conn: Any, allocates: Sequence[_Allocate], batch: _Batch) -> None:
        if not allocates:
            return
        keys = [(c.spec.tenant, c.spec.request_id) for c in allocates]
        existing = store.find_by_request_keys(conn, keys)
        in_batch: dict[tuple[str, str], tuple[str, _Allocate]] = {}
        failed: dict[PlacementRequest, PlacementOutcome] = {}
        followers: list[tuple[_Allocate, _Allocate]] = []
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
            request = spec.placement_request()
            outcome = failed.get(request) or place(self._snapshot, request, self._config)
            row = self._new_row(spec, digest)
            if outcome.placement is None:
                failed[request] = outcome
                error = self._no_wait_error(spec, outcome)
                if error is not None:
                    batch.results[id(command)] = error
                    continue
                row.update(
                    state="pending",
                    pending_reasons=_reasons_json(outcome),
                    unschedulable=outcome.unschedulable,
                    message=_summarise(outcome),
                )
                self._event(batch, row, "pending", f"waiting: {row['message']}")
                batch.stored_pending = True
            else:
                claims = outcome.placement.claims
                self._snapshot.reserve(claims)
                batch.new_claims.extend((row["id"], c) for c in claims)
                batch.touched_nodes.add(outcome.placement.node)
                message = f"placed on {outcome.placement.node}"
                row.update(
                    state="placed",
                    bindings=self._bindings(claims),
                    node=outcome.placement.node,
                    message=message,
                )
                self._event(batch, row, "placed", message)
            in_batch[key] = (digest, command)
            batch.new_rows.append(row)
            batch.results[id(command)] = AllocationRecord.from_mapping(row)
        for follower, leader in followers:
            batch.results[id(follower)] = batch.results[id(leader)]

    def _no_wait_error(
        self, spec: AllocationSpec, outcome: PlacementOutcome
    ) -> GpupoolError | None:
        if not spec.no_wait:
            return None
        summary = _summarise(outcome)
        if outcome.unschedulable:
            return FailedPrecondition(f"no GPU in this fleet can ever hold this request: {summary}")
        return ResourceExhausted(f"nothing free fits this request now: {summary}")

    def _new_row(self, spec: AllocationSpec, digest: str) -> dict[str, Any]:
        now = self._clock.now()
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
            "pending_reasons": [],
            "unschedulable": False,
            "bindings": [],
            "node": "",
            "created_at": now,
            "updated_at": now,
            "event_count": 0,
        }

    def _bindings(self, claims: Sequence[Claim]) -> list[dict[str, Any]]:
        bindings = []
        for claim in claims:
            gpu = self._snapshot.gpus[claim.gpu_id]
            profile = CATALOGUE[gpu.model].mig_profile(claim.mig_profile or "")
            bindings.append(
                {
                    "node": gpu.node,
                    "gpu_uuid": gpu.uuid,
                    "gpu_index": gpu.index,
                    "gpu_model": gpu.model,
                    "milli_gpu": claim.milli,
                    "memory_mib": claim.memory_mib,
                    "mig_profile": claim.mig_profile or "",
                    "mig_start": claim.mig_start or 0,
                    "mig_size": claim.mig_size,
                    "mig_memory_mib": profile.memory_mib if profile else 0,
                }
            )
        return bindings
