"""One allocator transaction: what it writes and whom to tell after commit."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from scheduler.domain.allocation import AllocationSpec
from scheduler.domain.catalogue import CATALOGUE
from scheduler.domain.fleet import Claim, FleetSnapshot
from scheduler.domain.quotas import TenantQuota
from scheduler.domain.requests import PlacementRequest
from scheduler.placement import PlacementConfig, PlacementOutcome
from scheduler.placement.preferences import place_with_preferences, spot_nodes
from scheduler.store import allocations as store
from scheduler.store import tenants

TERMINAL_STATES = ("released", "failed")
ACTIVE_STATES = ("placed", "running", "preempting")
NOTIFY_PAYLOAD_LIMIT = 7000  # PostgreSQL caps a payload at 8000 bytes


def new_allocation_id() -> str:
    return "a-" + secrets.token_hex(8)


@dataclass
class Batch:
    conn: Connection
    snapshot: FleetSnapshot
    config: PlacementConfig
    now: datetime
    is_leader: bool
    maybe_pending: bool  # the pending queue may hold something (a hint)
    maybe_reserved: bool = True  # victims may be checkpointing for someone (a hint)
    new_rows: list[dict[str, Any]] = field(default_factory=list)
    new_claims: list[tuple[str, Claim]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    changed_ids: list[str] = field(default_factory=list)
    results: dict[int, Any] = field(default_factory=dict)  # id(command) -> record or error
    freed_capacity: bool = False
    max_pending_per_tenant: int = 1000
    passes_run: int = 0
    round_trips: int = 0  # counted where the batch talks to the database
    _pending_counts: dict[str, int] = field(default_factory=dict)
    touched_nodes: set[str] = field(default_factory=set)  # their agents need a new desired state
    _reserved: dict[str, dict[str, int]] | None = None
    _quotas: dict[str, TenantQuota] | None = None
    _spot: frozenset[str] | None = None

    def place(self, request: PlacementRequest) -> PlacementOutcome:
        """Placement on this batch's snapshot, honouring spot preferences."""
        if self._spot is None:
            self._spot = spot_nodes(self.snapshot)
        return place_with_preferences(self.snapshot, request, self.config, self._spot)

    _usage: dict[str, float] | None = None

    @property
    def quotas(self) -> dict[str, TenantQuota]:
        if self._quotas is None:
            self._quotas = tenants.load_quotas(self.conn)
        return self._quotas

    @property
    def usage(self) -> dict[str, float]:
        """Units per tenant at the start of this batch (loaded on first use)."""
        if self._usage is None:
            self._usage = tenants.load_usage(self.conn)
        return self._usage

    def count_statement(self, *_: object) -> None:
        """A SQLAlchemy before_cursor_execute hook: one statement, one round trip
        (an executemany is pipelined by psycopg: also one)."""
        self.round_trips += 1

    def may_wait(self, tenant: str) -> bool:
        """Whether one more of this tenant's requests may join the queue (and
        count it if so). Asked only when a request would wait: rare on the hot path."""
        if tenant not in self._pending_counts:
            self._pending_counts[tenant] = store.pending_count(self.conn, tenant)
        if self._pending_counts[tenant] >= self.max_pending_per_tenant:
            return False
        self._pending_counts[tenant] += 1
        return True

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

    def reserve(self, allocation_id: str, claims: Sequence[Claim]) -> None:
        self.snapshot.reserve(claims)
        self.new_claims.extend((allocation_id, c) for c in claims)
        self.touched_nodes.update(self.snapshot.gpus[c.gpu_id].node for c in claims)

    def freed(self, claims: Sequence[Claim]) -> None:
        if not claims:
            return
        self.touched_nodes.update(self.snapshot.gpus[c.gpu_id].node for c in claims)
        self.snapshot.release(claims)
        self.freed_capacity = True

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
            payloads.append(f"capacity:{replica_id}:")
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
