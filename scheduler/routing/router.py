"""The router: one deployment's replica views, in-flight accounting and policy state.

The gateway, the gRPC Router service and the replay (`gpupool route-sim`) all
drive this one class, so they route identically. It holds no sockets and no
clock of its own (session TTLs take the clock the caller injects); policies
stay pure functions over the views it keeps.

Life of a request: `route()` picks a replica and books the request's
expected work on it (a `Ticket`); `first_token()` moves its prefill out of
the pending work; `finish()` books the actual output and releases the rest.
Everything here is bounded by the number of replicas, sessions (a TTL cache
of fixed size) and each replica's cache size — nothing grows with history.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from cachetools import TTLCache

from scheduler.domain.errors import InvalidArgument, quoted
from scheduler.routing.policies import (
    DEFAULT_POLICY,
    POLICIES,
    PolicyConfig,
    RoutingContext,
)
from scheduler.routing.prefix_index import PrefixIndex
from scheduler.routing.view import (
    Decision,
    EngineMetrics,
    ReplicaLoad,
    ReplicaSpeed,
    ReplicaView,
    RouteRequest,
)
from scheduler.serving.performance import EnginePerformance

DEFAULT_SESSION_TTL_S = 600.0
MAX_SESSIONS = 100_000
# Until outputs are seen, a request is expected to produce this many tokens.
INITIAL_OUTPUT_ESTIMATE = 256.0
OUTPUT_EMA_ALPHA = 0.05


def speed_of(perf: EnginePerformance) -> ReplicaSpeed:
    """The routing view of a replica's speed, from the one performance model."""
    return ReplicaSpeed(
        prefill_tokens_per_s=perf.prefill_tokens_per_s,
        decode_s_per_token=perf.decode_s_per_token,
        kv_capacity_tokens=perf.kv_capacity_tokens,
        max_num_seqs=perf.spec.max_num_seqs,
        attention_s_per_token2=perf.attention_s_per_token2,
    )


def check_policy(name: str) -> str:
    if name not in POLICIES:
        known = ", ".join(POLICIES)
        raise InvalidArgument(f"policy {quoted(name)} is not known (known: {known})")
    return name


@dataclass
class Ticket:
    """One routed request's booking on its replica."""

    id: int
    replica: str
    decision: Decision
    prefill_tokens: int
    prefill_s: float
    output_tokens: int
    prefilled: bool = False
    done: bool = False


@dataclass
class _Replica:
    view: ReplicaView
    load: ReplicaLoad = field(default_factory=ReplicaLoad)


class OutputEstimator:
    """Expected output tokens: `max_tokens` capped by a running mean of actual outputs."""

    def __init__(self, initial: float = INITIAL_OUTPUT_ESTIMATE) -> None:
        self.mean = initial

    def expect(self, max_tokens: int | None) -> int:
        estimate = max(1, round(self.mean))
        return estimate if max_tokens is None else max(1, min(max_tokens, estimate))

    def observe(self, output_tokens: int) -> None:
        self.mean += OUTPUT_EMA_ALPHA * (output_tokens - self.mean)


class Router:
    def __init__(
        self,
        policy: str = DEFAULT_POLICY,
        *,
        config: PolicyConfig | None = None,
        block_tokens: int = 16,
        session_ttl_s: float = DEFAULT_SESSION_TTL_S,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.policy = check_policy(policy)
        self.block_tokens = block_tokens
        self._replicas: dict[str, _Replica] = {}
        self._views: list[ReplicaView] = []
        self._speeds: dict[ReplicaSpeed, ReplicaSpeed] = {}
        self._tickets = itertools.count(1)
        self.outputs = OutputEstimator()
        timer = clock if clock is not None else time.monotonic
        self._sessions: TTLCache[str, str] = TTLCache(MAX_SESSIONS, session_ttl_s, timer=timer)
        self.context = RoutingContext(
            config=config or PolicyConfig(), prefix=PrefixIndex(), sessions=self._sessions
        )
        # Decisions per (policy, replica) since start: bounded by replicas × policies.
        self.decisions: dict[tuple[str, str], int] = {}

    # -- replicas -----------------------------------------------------------
    def upsert_replica(
        self,
        replica_id: str,
        *,
        state: str,
        speed: ReplicaSpeed,
        endpoint: str = "",
        gpu_model: str = "",
        variant: str = "",
    ) -> None:
        """Add or update a replica from the scheduler's watch stream."""
        # One object per distinct speed: policies cache per-hardware terms by identity,
        # so 64 replicas of 3 GPU kinds cost 3 prefill estimates per decision, not 64.
        speed = self._speeds.setdefault(speed, speed)
        known = self._replicas.get(replica_id)
        if known is None:
            load = ReplicaLoad()
            view = ReplicaView(replica_id, state, speed, load, endpoint, gpu_model, variant)
            self._replicas[replica_id] = _Replica(view, load)
        else:
            known.view = replace(
                known.view,
                state=state,
                speed=speed,
                endpoint=endpoint,
                gpu_model=gpu_model,
                variant=variant,
            )
        self.context.prefix.ensure(replica_id, speed.kv_capacity_tokens // self.block_tokens)
        self._rebuild()

    def remove_replica(self, replica_id: str) -> None:
        if self._replicas.pop(replica_id, None) is not None:
            self.context.prefix.forget(replica_id)
            self._rebuild()

    def set_metrics(self, replica_id: str, metrics: EngineMetrics) -> None:
        """The engine's latest metrics (they count this router's requests as of now)."""
        known = self._replicas.get(replica_id)
        if known is None:
            return
        known.load.in_flight_at_metrics = known.load.in_flight
        if known.view.metrics != metrics:
            known.view = replace(known.view, metrics=metrics)
            self._rebuild()

    def set_healthy(self, replica_id: str, healthy: bool) -> None:
        """Exclude a replica that failed (until the caller sees it healthy again)."""
        known = self._replicas.get(replica_id)
        if known is not None and known.view.healthy != healthy:
            known.view = replace(known.view, healthy=healthy)
            if not healthy:
                # Its cache is presumed lost with it.
                self.context.prefix.forget(replica_id)
                speed = known.view.speed
                self.context.prefix.ensure(
                    replica_id, speed.kv_capacity_tokens // self.block_tokens
                )
            self._rebuild()

    def replica(self, replica_id: str) -> ReplicaView | None:
        known = self._replicas.get(replica_id)
        return known.view if known is not None else None

    def views(self) -> list[ReplicaView]:
        return self._views

    def _rebuild(self) -> None:
        self._views = [r.view for r in self._replicas.values()]
        # Only the speeds of current replicas stay interned (bounded by the replicas).
        self._speeds = {v.speed: v.speed for v in self._views}

    # -- requests -----------------------------------------------------------
    def request(
        self,
        prompt_tokens: int,
        *,
        max_tokens: int | None = None,
        blocks: tuple[int, ...] | list[int] = (),
        session: str | None = None,
    ) -> RouteRequest:
        return RouteRequest(
            prompt_tokens=prompt_tokens,
            expected_output_tokens=self.outputs.expect(max_tokens),
            blocks=blocks,
            block_tokens=self.block_tokens,
            session=session,
        )

    def decide(self, request: RouteRequest, policy: str | None = None) -> Decision:
        """The decision alone (nothing booked): `gpupool route explain`."""
        name = policy or self.policy
        return POLICIES[name](request, self._views, self.context)

    def route(
        self, request: RouteRequest, policy: str | None = None
    ) -> tuple[Decision, Ticket | None]:
        """Decide and book the request on the chosen replica (None: no routable replica)."""
        decision = self.decide(request, policy)
        self.context.round_robin_counter += 1
        if decision.replica is None:
            return decision, None
        chosen = self._replicas[decision.replica]
        cached = min(decision.expected_hit_blocks * self.block_tokens, request.prompt_tokens)
        new_tokens = request.prompt_tokens - cached
        prefill_s = chosen.view.speed.prefill_s(new_tokens, cached)
        load = chosen.load
        load.in_flight += 1
        load.pending_prefill_tokens += new_tokens
        load.pending_prefill_s += prefill_s
        load.pending_output_tokens += request.expected_output_tokens
        self.context.prefix.record(decision.replica, request.blocks)
        if request.session:
            self._sessions[request.session] = decision.replica
        key = (decision.policy, decision.replica)
        self.decisions[key] = self.decisions.get(key, 0) + 1
        ticket = Ticket(
            next(self._tickets),
            decision.replica,
            decision,
            new_tokens,
            prefill_s,
            request.expected_output_tokens,
        )
        return decision, ticket

    def first_token(self, ticket: Ticket) -> None:
        """The prompt is prefilled: its prefill leaves the replica's pending work."""
        if ticket.prefilled or ticket.done:
            return
        ticket.prefilled = True
        known = self._replicas.get(ticket.replica)
        if known is not None:
            load = known.load
            load.pending_prefill_tokens = max(
                0, load.pending_prefill_tokens - ticket.prefill_tokens
            )
            load.pending_prefill_s = max(0.0, load.pending_prefill_s - ticket.prefill_s)

    def generated(self, ticket: Ticket, tokens: int) -> None:
        """`tokens` more output tokens were streamed (the pending output shrinks)."""
        if ticket.done or tokens <= 0:
            return
        known = self._replicas.get(ticket.replica)
        take = min(tokens, ticket.output_tokens)
        ticket.output_tokens -= take
        if known is not None:
            known.load.pending_output_tokens = max(0, known.load.pending_output_tokens - take)

    def finish(self, ticket: Ticket, output_tokens: int | None = None) -> None:
        """The request ended (done, failed or cancelled); `output_tokens` if known."""
        if ticket.done:
            return
        self.first_token(ticket)
        ticket.done = True
        if output_tokens is not None:
            self.outputs.observe(output_tokens)
        known = self._replicas.get(ticket.replica)
        if known is not None:
            load = known.load
            load.in_flight = max(0, load.in_flight - 1)
            load.pending_output_tokens = max(0, load.pending_output_tokens - ticket.output_tokens)
        ticket.output_tokens = 0
