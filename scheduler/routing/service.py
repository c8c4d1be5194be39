"""The Router use case behind the gRPC `Router` service (no grpc, no SQL here).

The scheduler keeps every deployment's replicas from its own replica watch
(DeploymentService.watch_replicas, read on one daemon thread), in the same
Pools the gateway uses, so `Route` answers from memory with the same
policies. Tickets of routed requests live until `complete` (or expire after
an hour, bounded in number), so a caller that never reports back cannot
grow memory or keep a replica looking busy forever.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache

from scheduler.domain.callers import Caller, Role
from scheduler.domain.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
    quoted,
)
from scheduler.gateway.replicas import Pool, Pools, ReplicaUpdate, Resync, SourceEvent, Synced
from scheduler.routing.router import Ticket, check_policy
from scheduler.routing.view import Decision, EngineMetrics, RouteRequest

log = logging.getLogger(__name__)

TICKET_TTL_S = 3600.0
# A replica a caller reported failed is excluded this long (no prober runs here).
EXCLUDE_S = 30.0
FIRST_SNAPSHOT_WAIT_S = 5.0
MAX_TICKETS = 100_000
MAX_HASHED_BLOCKS = 1024

# (caller, deployment, tenant, is_active) -> replica rows, then None once synced.
ReplicaFeed = Callable[[Caller, str, str, Callable[[], bool]], Iterator[Mapping[str, Any] | None]]


def update_from_row(row: Mapping[str, Any]) -> ReplicaUpdate:
    metrics = None
    if row.get("observed_at") is not None:
        metrics = EngineMetrics(
            float(row["kv_cache_usage"]),
            int(row["num_requests_running"]),
            int(row["num_requests_waiting"]),
        )
    return ReplicaUpdate(
        id=str(row["id"]),
        deployment=str(row["deployment"]),
        tenant=str(row["tenant"]),
        state=str(row["state"]),
        endpoint=str(row["endpoint"] or ""),
        model=str(row["model"] or ""),
        variant=str(row["variant"] or ""),
        gpu_model=str(row["gpu_model"] or ""),
        gpu_count=int(row["gpu_count"] or 1),
        metrics=metrics,
        routing=str(row.get("routing") or ""),
    )


@dataclass(frozen=True)
class RouteQuery:
    """A request to route, as a caller with its own data plane describes it."""

    deployment: str
    tenant: str = ""
    prompt_tokens: int = 0
    blocks: Sequence[int] = ()
    block_tokens: int = 0
    max_tokens: int = 0
    session: str = ""
    policy: str = ""


@dataclass(frozen=True)
class Routed:
    decision: Decision
    endpoint: str
    ticket: str
    cached_tokens: int = 0


class RoutingService:
    def __init__(
        self,
        pools: Pools | None = None,
        clock: Callable[[], float] = time.monotonic,
        feed: ReplicaFeed | None = None,
        feed_caller: Caller | None = None,
    ) -> None:
        self.pools = pools or Pools()
        # The replica feed starts with the first call (a scheduler nobody asks
        # to route does not poll for replicas).
        self._feed = feed
        self._feed_caller = feed_caller
        self._clock = clock
        self._excluded: dict[tuple[int, str], tuple[Pool, float]] = {}
        self._lock = threading.Lock()
        self._tickets: TTLCache[str, tuple[Pool, Ticket]] = TTLCache(MAX_TICKETS, TICKET_TTL_S)
        self._ids = itertools.count(1)
        self._running = False
        self._thread: threading.Thread | None = None

    # -- the replica feed ------------------------------------------------------
    def apply(self, update: SourceEvent) -> None:
        with self._lock:
            self.pools.apply(update)

    def follow(self, feed: ReplicaFeed, caller: Caller) -> None:
        """Read `feed` on a daemon thread until stop()."""
        self._running = True

        def run() -> None:
            restarted = False
            while self._running:
                try:
                    if restarted:
                        # A restart is a fresh snapshot: replicas that went away while the
                        # feed was down are dropped at its Synced (as the gateway's watch).
                        self.apply(Resync())
                    restarted = True
                    for row in feed(caller, "", "", lambda: self._running):
                        self.apply(Synced() if row is None else update_from_row(row))
                except Exception:  # the database went away: retry, as the gateway's watch does
                    log.exception("router replica feed failed; retrying")
                    threading.Event().wait(1.0)

        self._thread = threading.Thread(target=run, name="router-replicas", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running = False

    # -- use cases -------------------------------------------------------------
    def _start_feed(self) -> None:
        if self._feed is None or self._feed_caller is None or self._thread is not None:
            return
        self.follow(self._feed, self._feed_caller)
        # Let the first snapshot arrive before answering (it is one query).
        self._lock.release()
        try:
            self.pools.synced.wait(FIRST_SNAPSHOT_WAIT_S)
        finally:
            self._lock.acquire()

    def _pool(self, caller: Caller, deployment: str, tenant: str) -> Pool:
        self._start_feed()
        now = self._clock()
        for key, (excluded, until) in list(self._excluded.items()):
            if until <= now:
                del self._excluded[key]
                excluded.router.set_healthy(key[1], True)
        if caller.role is Role.SERVICE:
            if tenant and tenant != caller.tenant:
                raise PermissionDenied(f"{caller.describe()} may not route tenant {quoted(tenant)}")
            tenant = caller.tenant
        found = self.pools.find(deployment, tenant or None)
        if found is None:
            where = f" of tenant {quoted(tenant)}" if tenant else ""
            raise NotFound(f"deployment {quoted(deployment)}{where} has no replicas here")
        return found

    def _request(self, pool: Pool, query: RouteQuery) -> RouteRequest:
        if query.block_tokens and query.block_tokens != pool.router.block_tokens:
            raise InvalidArgument(
                f"block_tokens is {query.block_tokens}; this router hashes blocks of "
                f"{pool.router.block_tokens} tokens"
            )
        if len(query.blocks) > MAX_HASHED_BLOCKS:
            raise InvalidArgument(f"prompt_blocks: at most {MAX_HASHED_BLOCKS} blocks")
        return pool.router.request(
            query.prompt_tokens,
            max_tokens=query.max_tokens or None,
            blocks=list(query.blocks),
            session=query.session or None,
        )

    def explain(self, caller: Caller, query: RouteQuery) -> Routed:
        with self._lock:
            pool = self._pool(caller, query.deployment, query.tenant)
            request = self._request(pool, query)
            policy = check_policy(query.policy) if query.policy else None
            decision = pool.router.decide(request, policy)
            endpoint = pool.endpoints.get(decision.replica or "", "")
            cached = min(
                decision.expected_hit_blocks * pool.router.block_tokens, request.prompt_tokens
            )
        return Routed(decision, endpoint, "", cached)

    def route(self, caller: Caller, query: RouteQuery) -> Routed:
        with self._lock:
            pool = self._pool(caller, query.deployment, query.tenant)
            request = self._request(pool, query)
            policy = check_policy(query.policy) if query.policy else None
            decision, ticket = pool.router.route(request, policy)
            if ticket is None:
                raise Unavailable(
                    f"no replica of {query.deployment} can take requests now: {decision.reason}"
                )
            key = f"t{next(self._ids)}"
            self._tickets[key] = (pool, ticket)
            endpoint = pool.endpoints.get(ticket.replica, "")
            cached = request.prompt_tokens - ticket.prefill_tokens
        return Routed(decision, endpoint, key, cached)

    def complete(
        self,
        caller: Caller,
        deployment: str,
        tenant: str,
        ticket: str,
        output_tokens: int,
        replica_failed: bool = False,
    ) -> None:
        with self._lock:
            pool = self._pool(caller, deployment, tenant)
            booked = self._tickets.pop(ticket, None)
            if booked is None or booked[0] is not pool:
                raise NotFound(f"ticket {quoted(ticket)} is not open (completed or expired)")
            _, routed = booked
            pool.router.finish(routed, output_tokens)
            if replica_failed:
                pool.router.set_healthy(routed.replica, False)
                self._excluded[(id(pool), routed.replica)] = (pool, self._clock() + EXCLUDE_S)
