"""Routing policies: pure functions (request, replica views, context) -> Decision.

Every policy first keeps the routable replicas (ready and healthy: starting,
standby, draining, stopped and unhealthy replicas are never chosen), then
picks one and says why. Costs are in seconds, estimated from each replica's
hardware speed (scheduler/serving/performance.py), so an A100 and a B200
with the same queue are not equally loaded.

- `round_robin`: the next replica in id order.
- `least_request`: the fewest requests in flight from this router.
- `token_load`: least estimated time to this request's first token with no
  cache: pending prefill seconds + pending output tokens × the replica's decode
  cost per token + this prompt's prefill on that replica.
- `prefix`: the replica holding the longest cached prefix of the prompt (per
  the router's approximate per-replica LRU index), if it covers at least
  `prefix_min_share` of the prompt's blocks; affinity is broken when that
  replica is saturated or its expected TTFT is worse than the best cold
  replica's by more than `prefix_penalty_s`; otherwise `token_load`.
- `session`: the replica the request's session (x-session-id or `user`) was
  last sent to, while the binding lives (TTL) and that replica is routable and
  not saturated; otherwise the default policy (and the router rebinds).
- `weighted` (the default): filters (routable, then not saturated unless all
  are) and three weighted scorers in seconds — load (hardware-normalised
  pending work), prefill (this prompt's uncached prefill on that replica, so
  prefix overlap counts by the time it saves *on that hardware*) and queue
  (requests the engine reports waiting, each worth the replica's mean
  prefill) — the lowest total wins.

A replica is *saturated* when its engine reports KV-cache use at or above
`saturation_kv` or this router has `max_num_seqs` requests in flight there.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from scheduler.routing.prefix_index import PrefixIndex
from scheduler.routing.view import Decision, ReplicaView, RouteRequest

DEFAULT_POLICY = "weighted"
# How many of the best candidates a decision lists with their scores.
EXPLAINED_CANDIDATES = 4


@dataclass(frozen=True)
class PolicyConfig:
    """Knobs of the policies; the defaults are the ones documented in the README."""

    saturation_kv: float = 0.95
    saturation_waiting: int = 1
    prefix_min_share: float = 0.3  # SGLang's cache-aware router threshold
    prefix_penalty_s: float = 4.0
    weight_load: float = 1.0
    weight_prefill: float = 1.0
    weight_queue: float = 1.0
    weight_saved: float = 2.0


@dataclass
class RoutingContext:
    """What policies may read beyond the replicas: the only state they depend on."""

    config: PolicyConfig = field(default_factory=PolicyConfig)
    prefix: PrefixIndex = field(default_factory=PrefixIndex)
    sessions: Mapping[str, str] = field(default_factory=dict)
    round_robin_counter: int = 0


Policy = Callable[[RouteRequest, Sequence[ReplicaView], RoutingContext], Decision]


def _none(policy: str, replicas: Sequence[ReplicaView]) -> Decision:
    if not replicas:
        return Decision(policy, None, "no replicas")
    states = sorted({r.state if r.healthy else "unhealthy" for r in replicas})
    return Decision(policy, None, f"no routable replica ({len(replicas)}: {', '.join(states)})")


def saturated(replica: ReplicaView, config: PolicyConfig) -> bool:
    metrics = replica.metrics
    return replica.load.in_flight >= replica.speed.max_num_seqs or (
        metrics.kv_cache_usage >= config.saturation_kv
        and metrics.num_requests_waiting >= config.saturation_waiting
    )


def _ttft_cost(replica: ReplicaView, request: RouteRequest, hit_blocks: int) -> tuple[float, float]:
    """(pending work seconds, this prompt's uncached prefill seconds) on `replica`."""
    cached = min(hit_blocks * request.block_tokens, request.prompt_tokens)
    own = replica.speed.prefill_s(request.prompt_tokens - cached, cached)
    return replica.pending_work_s(), own


def round_robin(
    request: RouteRequest, replicas: Sequence[ReplicaView], ctx: RoutingContext
) -> Decision:
    candidates = sorted((r for r in replicas if r.routable), key=lambda r: r.id)
    if not candidates:
        return _none("round_robin", replicas)
    chosen = candidates[ctx.round_robin_counter % len(candidates)]
    return Decision(
        "round_robin",
        chosen.id,
        f"turn {ctx.round_robin_counter} of {len(candidates)} routable",
        {chosen.id: {"turn": float(ctx.round_robin_counter % len(candidates))}},
        expected_hit_blocks=ctx.prefix.overlap(chosen.id, request.blocks),
    )


def least_request(
    request: RouteRequest, replicas: Sequence[ReplicaView], ctx: RoutingContext
) -> Decision:
    candidates = [r for r in replicas if r.routable]
    if not candidates:
        return _none("least_request", replicas)
    ranked = sorted(candidates, key=lambda r: (r.load.in_flight, r.pending_work_s(), r.id))
    chosen = ranked[0]
    scores = {r.id: {"in_flight": float(r.load.in_flight)} for r in ranked[:EXPLAINED_CANDIDATES]}
    return Decision(
        "least_request",
        chosen.id,
        f"fewest in flight ({chosen.load.in_flight})",
        scores,
        expected_hit_blocks=ctx.prefix.overlap(chosen.id, request.blocks),
    )


def _least_ttft(
    policy: str,
    request: RouteRequest,
    candidates: Sequence[ReplicaView],
    overlaps: Mapping[str, int],
) -> tuple[ReplicaView, float, dict[str, dict[str, float]]]:
    best: ReplicaView | None = None
    best_cost = 0.0
    costs: list[tuple[float, str, float, float]] = []
    for replica in candidates:
        load, own = _ttft_cost(replica, request, overlaps.get(replica.id, 0))
        cost = load + own
        costs.append((cost, replica.id, load, own))
        if best is None or cost < best_cost:
            best, best_cost = replica, cost
    assert best is not None
    costs.sort()
    scores = {
        rid: {"load_s": load, "prefill_s": own, "cost_s": cost}
        for cost, rid, load, own in costs[:EXPLAINED_CANDIDATES]
    }
    return best, best_cost, scores


def token_load(
    request: RouteRequest, replicas: Sequence[ReplicaView], ctx: RoutingContext
) -> Decision:
    candidates = [r for r in replicas if r.routable]
    if not candidates:
        return _none("token_load", replicas)
    chosen, cost, scores = _least_ttft("token_load", request, candidates, {})
    return Decision(
        "token_load",
        chosen.id,
        f"least expected time to first token ({cost:.3g} s, no cache assumed)",
        scores,
        expected_hit_blocks=ctx.prefix.overlap(chosen.id, request.blocks),
    )


def prefix(request: RouteRequest, replicas: Sequence[ReplicaView], ctx: RoutingContext) -> Decision:
    candidates = [r for r in replicas if r.routable]
    if not candidates:
        return _none("prefix", replicas)
    cfg = ctx.config
    overlaps = ctx.prefix.overlaps([r.id for r in candidates], request.blocks)
    unsaturated = [r for r in candidates if not saturated(r, cfg)] or candidates
    cold, cold_cost, scores = _least_ttft("prefix", request, unsaturated, {})
    total = max(1, len(request.blocks))
    # The longest overlap; among equals the least loaded (then the id: deterministic).
    by_id = {r.id: r for r in candidates}
    warm_id = min(
        overlaps,
        key=lambda rid: (-overlaps[rid], by_id[rid].pending_work_s(), rid),
        default=None,
    )
    if warm_id is None or overlaps[warm_id] / total < cfg.prefix_min_share:
        best_share = 0.0 if warm_id is None else overlaps[warm_id] / total
        return Decision(
            "prefix",
            cold.id,
            f"no replica holds {cfg.prefix_min_share:.0%} of the prefix "
            f"(best {best_share:.0%}); least load",
            scores,
            expected_hit_blocks=overlaps.get(cold.id, 0),
        )
    warm = next(r for r in candidates if r.id == warm_id)
    load, own = _ttft_cost(warm, request, overlaps[warm_id])
    warm_cost = load + own
    scores[warm.id] = {
        "overlap_blocks": float(overlaps[warm_id]),
        "load_s": load,
        "prefill_s": own,
        "cost_s": warm_cost,
    }
    if saturated(warm, cfg):
        reason = f"warm replica {warm.id} saturated; least load"
        return Decision("prefix", cold.id, reason, scores, overlaps.get(cold.id, 0))
    if warm_cost > cold_cost + cfg.prefix_penalty_s:
        reason = (
            f"warm replica {warm.id} TTFT {warm_cost:.3g} s > cold {cold_cost:.3g} s "
            f"+ {cfg.prefix_penalty_s:g} s penalty; least load"
        )
        return Decision("prefix", cold.id, reason, scores, overlaps.get(cold.id, 0))
    reason = f"longest cached prefix ({overlaps[warm_id]} of {total} blocks)"
    return Decision("prefix", warm.id, reason, scores, overlaps[warm_id])


def weighted(
    request: RouteRequest, replicas: Sequence[ReplicaView], ctx: RoutingContext
) -> Decision:
    candidates = [r for r in replicas if r.routable]
    if not candidates:
        return _none("weighted", replicas)
    cfg = ctx.config
    kv_limit, waiting_limit = cfg.saturation_kv, cfg.saturation_waiting
    unsaturated = [
        r
        for r in candidates
        if r.load.in_flight < r.speed.max_num_seqs
        and (r.metrics.kv_cache_usage < kv_limit or r.metrics.num_requests_waiting < waiting_limit)
    ]  # saturated(), inlined: this runs for every replica on every request
    guard = ""
    if unsaturated:
        if len(unsaturated) < len(candidates):
            guard = f"; {len(candidates) - len(unsaturated)} saturated skipped"
        candidates = unsaturated
    else:
        guard = "; all saturated"
    overlaps = ctx.prefix.overlaps([r.id for r in candidates], request.blocks)
    longest = max(overlaps.values(), default=0)
    if not longest or longest < cfg.prefix_min_share * len(request.blocks):
        longest = -1  # no replica holds enough of the prompt for an affinity bonus
    # The hot loop (64 replicas within a few tens of µs): a replica's cost is
    # w_load × pending work + w_prefill × this prompt's uncached prefill
    # + w_queue × requests other routers queued there × this prompt's prefill
    # - w_saved × prefill its cached prefix saves - the affinity bonus.
    prompt = request.prompt_tokens
    block_tokens = request.block_tokens
    w_load, w_prefill = cfg.weight_load, cfg.weight_prefill
    w_saved, w_queue, bonus = cfg.weight_saved, cfg.weight_queue, cfg.prefix_penalty_s
    # Per hardware kind (the router keeps one object per distinct speed): this
    # prompt's full prefill, and per cached depth its prefill term.
    full_by_speed: dict[int, float] = {}
    terms_by_speed: dict[int, dict[int, float]] = {}
    hit_of = overlaps.get
    best_i = 0
    best_total = math.inf
    totals: list[float] = []
    for i, replica in enumerate(candidates):
        speed = replica.speed
        hit = hit_of(replica.id, 0)
        terms = terms_by_speed.get(id(speed))
        if terms is None:
            terms = terms_by_speed[id(speed)] = {}
            full_by_speed[id(speed)] = speed.prefill_s(prompt)
        term = terms.get(hit)
        if term is None:
            full = full_by_speed[id(speed)]
            cached = min(hit * block_tokens, prompt)
            own = speed.prefill_s(prompt - cached, cached)
            term = terms[hit] = w_prefill * own - w_saved * (full - own)
        load = replica.load
        pending = load.pending_prefill_s + load.pending_output_tokens * speed.decode_s_per_token
        total = w_load * pending + term
        if hit == longest:
            total -= bonus
        metrics = replica.metrics
        # Requests the engine holds that this router did not send (other gateways).
        unseen = (
            metrics.num_requests_running + metrics.num_requests_waiting - load.in_flight_at_metrics
        )
        if unseen > 0:
            total += w_queue * unseen * full_by_speed[id(speed)]
        totals.append(total)
        if total < best_total:
            best_i, best_total = i, total
    chosen = candidates[best_i]
    scores = {}
    for i in heapq.nsmallest(EXPLAINED_CANDIDATES, range(len(totals)), key=totals.__getitem__):
        replica = candidates[i]
        hit = overlaps.get(replica.id, 0)
        load_s, own = _ttft_cost(replica, request, hit)
        metrics = replica.metrics
        unseen = (
            metrics.num_requests_running
            + metrics.num_requests_waiting
            - replica.load.in_flight_at_metrics
        )
        scores[replica.id] = {
            "overlap_blocks": float(hit),
            "load_s": load_s,
            "prefill_s": own,
            "queue_s": max(0, unseen) * replica.speed.prefill_s(prompt),
            "cost_s": totals[i],
        }
    hit = overlaps.get(chosen.id, 0)
    reason = f"least weighted cost {best_total:.3g} s ({hit} cached blocks){guard}"
    return Decision("weighted", chosen.id, reason, scores, hit)


def session(
    request: RouteRequest, replicas: Sequence[ReplicaView], ctx: RoutingContext
) -> Decision:
    bound = ctx.sessions.get(request.session) if request.session else None
    if bound is not None:
        for replica in replicas:
            if replica.id == bound and replica.routable and not saturated(replica, ctx.config):
                return Decision(
                    "session",
                    replica.id,
                    "session affinity",
                    {replica.id: {"bound": 1.0}},
                    ctx.prefix.overlap(replica.id, request.blocks),
                )
    fallback = POLICIES[DEFAULT_POLICY](request, replicas, ctx)
    why = "no session" if request.session is None else "session unbound or its replica unusable"
    return Decision("session", fallback.replica, f"{why}; {fallback.reason}", fallback.scores,
                    fallback.expected_hit_blocks)  # fmt: skip


POLICIES: dict[str, Policy] = {
    "round_robin": round_robin,
    "least_request": least_request,
    "token_load": token_load,
    "prefix": prefix,
    "session": session,
    "weighted": weighted,
}
