"""One allocator transaction: what it writes and whom to tell after commit."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cachetools import TTLCache
from sqlalchemy import Connection

from scheduler.allocator.capacity import capacity_payloads
from scheduler.allocator.pending_counts import PendingCounts
from scheduler.allocator.waiting import WaitingModels
from scheduler.domain.allocation import AllocationSpec
from scheduler.domain.catalogue import CATALOGUE
from scheduler.domain.fleet import Claim, FleetSnapshot
from scheduler.domain.quotas import TenantQuota, claim_units
from scheduler.domain.requests import PlacementRequest
from scheduler.placement import PlacementConfig, PlacementOutcome
from scheduler.placement.preferences import place_with_preferences, spot_nodes
from scheduler.store import allocations as store
from scheduler.store import tenants
from scheduler.store.batch_sql import BatchStatements

TERMINAL_STATES = ("released", "failed")
ACTIVE_STATES = ("placed", "running", "preempting")
NOTIFY_PAYLOAD_LIMIT = 7000  # PostgreSQL caps a payload at 8000 bytes
MAKE_ROOM_PER_BATCH = 8
# A request preemption could not make room for is not weighed again for this
# long: during a flood of requests that cannot fit, every batch would otherwise
# read all running work below their priority again (O(running) per batch).
NO_ROOM_MEMO_S = 2.0


def no_room_memo(
    timer: Callable[[], float] = time.monotonic,
) -> TTLCache[tuple[str, PlacementRequest], bool]:
    """Keyed by (tenant, request): entitlement to reclaim borrowed GPUs is per tenant."""
    return TTLCache(maxsize=4096, ttl=NO_ROOM_MEMO_S, timer=timer)


class RandomIds:
    """Hex ids from the OS's random source, read for many ids at once: each
    read gives up the GIL, and under load the allocator waits to get it back."""

    def __init__(self, size: int = 8, per_read: int = 512) -> None:
        self._size, self._per_read = size, per_read
        self._lock = threading.Lock()
        self._pool, self._at = b"", 0
        os.register_at_fork(after_in_child=self._forget)  # a child draws its own

    def _forget(self) -> None:
        self._pool, self._at = b"", 0

    def next(self) -> str:
        with self._lock:
            if self._at + self._size > len(self._pool):
                self._pool, self._at = os.urandom(self._size * self._per_read), 0
            chunk = self._pool[self._at : self._at + self._size]
            self._at += self._size
        return chunk.hex()


_ALLOCATION_IDS = RandomIds()


def new_allocation_id() -> str:
    return "a-" + _ALLOCATION_IDS.next()


@dataclass
class Batch:
    conn: Connection
    # The hot statements, plain psycopg on the same connection and transaction.
    sql: BatchStatements
    snapshot: FleetSnapshot
    config: PlacementConfig
    now: datetime
    is_leader: bool
    maybe_pending: bool  # the pending queue may hold something (a hint)
    # Which models what waits (and could be placed) may use (a hint; see waiting.py).
    waiting: WaitingModels = field(default_factory=WaitingModels)
    maybe_reserved: bool = True  # victims may be checkpointing for someone (a hint)
    new_rows: list[dict[str, Any]] = field(default_factory=list)
    new_claims: list[tuple[str, Claim]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    changed_ids: list[str] = field(default_factory=list)
    results: dict[int, Any] = field(default_factory=dict)  # id(command) -> record or error
    freed_capacity: bool = False
    # Units each tenant holds: the allocator's running count (never recomputed
    # from history), copied for this batch, which updates it as it goes; the
    # allocator keeps the copy if the batch commits.
    usage: dict[str, float] = field(default_factory=dict)
    usage_delta: dict[str, float] = field(default_factory=dict)  # what this batch moved
    freed_models: set[str] = field(default_factory=set)  # GPU models this batch freed
    shape_changed: bool = False  # the fleet itself changed since the last pass
    # Rows the opening read locked (releases) or found (retried requests).
    locked: dict[str, dict[str, Any]] = field(default_factory=dict)
    found: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # Writes nothing in the batch reads back, run first in the closing pipeline.
    closing_writes: list[Callable[[], None]] = field(default_factory=list)
    max_pending_per_tenant: int = 1000
    passes_run: int = 0
    asking_tenants: set[str] = field(default_factory=set)  # of this batch's allocates
    # Waiting counts per tenant: the allocator's (kept across batches), those this
    # batch read (as of its transaction) and what it queues; see pending_counts.py.
    pending: PendingCounts = field(default_factory=PendingCounts)
    counts_read: dict[str, int] = field(default_factory=dict)
    counts_read_at: float | None = None
    queued: Counter[str] = field(default_factory=Counter)
    _weighed: set[PlacementRequest] = field(default_factory=set)
    # Requests preemption found no room for lately: the allocator's, kept across batches.
    no_room: TTLCache[tuple[str, PlacementRequest], bool] = field(default_factory=no_room_memo)
    touched_nodes: set[str] = field(default_factory=set)  # their agents need a new desired state
    _reserved: dict[str, dict[str, int]] | None = None
    cached_quotas: dict[str, TenantQuota] | None = None  # the allocator's, if fresh
    spot: frozenset[str] | None = None  # spot nodes: the allocator's, kept with its snapshot
    fenced: bool | None = None  # the leader's epoch checked in this transaction (None: not yet)
    snapshot_behind: bool = False  # it lacked a claim this batch released: reload after
    # Wall seconds in its opening read and its closing write (each one round
    # trip, the closing one with the building of what it sends): see Allocator.seconds.
    opening_s: float = 0.0
    closing_s: float = 0.0
    revocations: list[str] = field(default_factory=list)  # how each revoke went (metrics)

    def place(self, request: PlacementRequest) -> PlacementOutcome:
        """Placement on this batch's snapshot, honouring spot preferences."""
        if self.spot is None:
            self.spot = spot_nodes(self.snapshot)
        return place_with_preferences(self.snapshot, request, self.config, self.spot)

    @property
    def quotas(self) -> dict[str, TenantQuota]:
        """Tenant quotas: the allocator's cached copy, or read (and then cached)."""
        if self.cached_quotas is None:
            self.cached_quotas = tenants.load_quotas(self.conn)
        return self.cached_quotas

    def open(
        self,
        release_ids: Sequence[str],
        keys: Sequence[tuple[str, str]],
        tenants: Sequence[str],
    ) -> None:
        """The batch's one opening read, BEGIN included: lock what it releases,
        find what retries ask, count what the asking tenants have waiting (those
        without a recent count)."""
        unknown = self.pending.unknown(tenants)
        started = time.perf_counter()
        self.locked, self.found, counts = self.sql.open(release_ids, keys, unknown)
        self.opening_s += time.perf_counter() - started
        if counts is not None:
            self._counted(unknown, counts)

    def claims_of(self, row: dict[str, Any]) -> list[Claim]:
        """The claims a placed row holds, from its bindings (one per claim)."""
        claims = []
        for binding in row["bindings"]:
            node = self.snapshot.nodes.get(binding["node"])
            gpu = (
                next((g for g in node.gpus if g.uuid == binding["gpu_uuid"]), None)
                if node
                else None
            )
            if gpu is None:
                continue  # the GPU left the fleet; the database frees its counters
            profile = CATALOGUE[gpu.model].mig_profile(binding["mig_profile"] or "")
            claims.append(
                Claim(
                    gpu_id=gpu.id,
                    milli=binding["milli_gpu"] if profile is None else 0,
                    memory_mib=binding["memory_mib"] if profile is None else 0,
                    mig_profile=profile.name if profile else None,
                    mig_start=binding["mig_start"] if profile else None,
                    mig_size=binding["mig_size"] if profile else 0,
                    mig_compute=profile.compute_slices if profile else 0,
                )
            )
        return claims

    def count_statement(self) -> None:
        """One SQLAlchemy statement of this batch (before_cursor_execute): one round trip
        (an executemany is pipelined by psycopg: also one); in the final
        pipeline the statements share one round trip, counted by the allocator."""
        if not self.sql.pipelined:
            self.sql.round_trip()

    @property
    def round_trips(self) -> int:
        return self.sql.round_trips

    def may_weigh(self, tenant: str, request: PlacementRequest) -> bool:
        """Whether to weigh preemption for this request now: once per distinct
        request, at most MAKE_ROOM_PER_BATCH per batch (victim choice queries
        the running work; a flood of identical requests must not repeat it),
        and not again soon for a tenant's request it could not help."""
        if request in self._weighed or len(self._weighed) >= MAKE_ROOM_PER_BATCH:
            return False
        if (tenant, request) in self.no_room:
            return False  # nothing to preempt for it a moment ago
        self._weighed.add(request)
        return True

    def may_wait(self, tenant: str) -> bool:
        """Whether one more of this tenant's requests may join the queue (and
        count it if so). Asked only when a request would wait: rare on the hot path."""
        waiting = self._waiting_count(tenant)
        refusable = tenant in self.counts_read or self.pending.may_refuse_by(tenant)
        if waiting is None or (waiting >= self.max_pending_per_tenant and not refusable):
            # Once per batch: this tenant and every asking one without a count, in one query.
            others = self.pending.unknown(self.asking_tenants)
            tenants = sorted(({tenant, *others}) - set(self.counts_read))
            self._counted(tenants, self.sql.pending_counts(tenants))
            waiting = self._waiting_count(tenant)
            assert waiting is not None, "just counted"
        if waiting >= self.max_pending_per_tenant:
            return False
        self.queued[tenant] += 1
        return True

    def _waiting_count(self, tenant: str) -> int | None:
        if tenant in self.counts_read:
            return self.counts_read[tenant] + self.queued[tenant]
        known = self.pending.usable(tenant)
        return None if known is None else known + self.queued[tenant]

    def _counted(self, tenants: Iterable[str], counts: dict[str, int]) -> None:
        if self.counts_read_at is None:
            self.counts_read_at = self.pending.now()  # the earliest read: errs towards stale
        self.counts_read.update({t: counts.get(t, 0) for t in tenants})

    def keep_counts(self) -> None:
        """After commit: what this batch read and queued, for the batches after it."""
        self.pending.read(self.counts_read, self.counts_read_at)
        self.pending.add(self.queued)

    def placement_request(self, spec: AllocationSpec, allocation_id: str) -> PlacementRequest:
        """The spec's placement request, kept off nodes where preemption is
        making room for other work of the same or a higher priority."""
        request = spec.placement_request()
        avoid = frozenset(
            node
            for node, preemptors in self._reservations().items()
            if any(p >= request.priority for i, p in preemptors.items() if i != allocation_id)
        )
        return replace(request, avoid_nodes=avoid) if avoid else request

    def reserve_node(self, node: str, allocation_id: str, priority: int) -> None:
        """Preemption just started on `node` to make room for this allocation."""
        self._reservations().setdefault(node, {})[allocation_id] = priority
        self.maybe_reserved = True

    def _reservations(self) -> dict[str, dict[str, int]]:
        if self._reserved is None:
            # Most batches run with no preemption in flight: skip the query then.
            self._reserved = store.reserved_nodes(self.conn) if self.maybe_reserved else {}
            self.maybe_reserved = bool(self._reserved)
        return self._reserved

    def event(
        self,
        row: dict[str, Any],
        state: str,
        reason: str,
        message: str,
        deadline: datetime | None = None,
    ) -> None:
        """Append to the allocation's history; bumps row["event_count"]."""
        row["event_count"] = row.get("event_count", 0) + 1
        self.events.append(
            {
                "allocation_id": row["id"],
                "seq": row["event_count"],
                "state": state,
                "reason": reason,
                "message": message,
                "deadline": deadline,
                "at": self.now,
            }
        )
        self.changed_ids.append(row["id"])

    def reserve(self, allocation_id: str, claims: Sequence[Claim], tenant: str) -> None:
        self.snapshot.reserve(claims)
        self.new_claims.extend((allocation_id, c) for c in claims)
        self.touched_nodes.update(self.snapshot.gpus[c.gpu_id].node for c in claims)
        self._count_units(tenant, claims, +1)

    def freed(self, rows: dict[str, dict[str, Any]], freed: Sequence[tuple[str, Claim]]) -> None:
        """Claims deleted from these (locked) rows: back to the snapshot."""
        if not freed:
            return
        claims = [c for _, c in freed]
        gpus = [self.snapshot.gpus[c.gpu_id] for c in claims]
        self.touched_nodes.update(g.node for g in gpus)
        self.freed_models.update(g.model for g in gpus)
        try:
            self.snapshot.release(claims)
        except ValueError:
            # Another replica placed it since this snapshot was loaded (its
            # NOTIFY has not reached us yet): the database is the truth, and
            # the snapshot is reloaded after this batch.
            self.snapshot_behind = True
        self.freed_capacity = True
        for allocation_id, claim in freed:
            self._count_units(rows[allocation_id]["tenant"], [claim], -1)

    def _count_units(self, tenant: str, claims: Sequence[Claim], sign: int) -> None:
        units = sum(
            claim_units(self.snapshot.gpus[c.gpu_id].model, c.milli, c.mig_compute) for c in claims
        )
        self.usage[tenant] = self.usage.get(tenant, 0.0) + sign * units
        self.usage_delta[tenant] = self.usage_delta.get(tenant, 0.0) + sign * units

    def bindings(self, claims: Sequence[Claim]) -> list[dict[str, Any]]:
        """What the allocation record keeps of its claims, also after release."""
        bindings = []
        for rank, claim in enumerate(claims):
            gpu = self.snapshot.gpus[claim.gpu_id]
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
                    "rank": rank,
                }
            )
        return bindings

    def payloads(self, replica_id: str) -> list[str]:
        """NOTIFY payloads telling other replicas what changed."""
        payloads = []
        if self.freed_capacity or self.new_claims:
            # Named nodes and usage deltas: the others reload just those nodes.
            payloads += capacity_payloads(
                replica_id, self.touched_nodes, self.usage_delta, NOTIFY_PAYLOAD_LIMIT
            )
        if self.touched_nodes:
            nodes = ",".join(sorted(self.touched_nodes))
            payloads.append(f"nodes:{replica_id}:{nodes}"[:NOTIFY_PAYLOAD_LIMIT])
        prefix = f"alloc:{replica_id}:"
        chunk: list[str] = []
        size = len(prefix)
        for allocation_id in self.changed_ids:
            if size + len(allocation_id) + 1 > NOTIFY_PAYLOAD_LIMIT:
                payloads.append(prefix + ",".join(chunk))
                chunk, size = [], len(prefix)
            chunk.append(allocation_id)
            size += len(allocation_id) + 1
        if chunk:
            payloads.append(prefix + ",".join(chunk))
        return payloads
