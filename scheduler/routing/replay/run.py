"""Replay a trace through the routing policies against the engine model.

Every policy sees the same requests on the same fleet; the router is the one
the gateway runs (scheduler/routing/router.py) with the same feedback (first
token, finish), and engine metrics reach it as periodic scrapes. Replicas
are `SimReplica`s (replay/engine.py) built from the one performance model.

`--load` rescales time so the offered load is that share of the fleet's
capacity, counting every prompt token uncached: with λ requests/s and, on
replica r, a mean request cost E_r = prefill_s(prompt) + output × decode_s
per token (GPU seconds at the full batch), capacity is Σ_r 1/E_r requests/s.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scheduler.domain.errors import InvalidArgument, quoted
from scheduler.routing.policies import POLICIES, PolicyConfig
from scheduler.routing.replay.engine import Job, SimReplica
from scheduler.routing.replay.trace import Trace
from scheduler.routing.router import Router, Ticket, speed_of
from scheduler.routing.view import EngineMetrics
from scheduler.serving.performance import EnginePerformance, engine_performance

DEFAULT_FLEET = "4xB200,6xH100-80GB,6xA100-80GB"
DEFAULT_MODEL = "llama-3.1-8b"
SCRAPE_INTERVAL_S = 1.0
REPLAY_POLICIES = ("round_robin", "least_request", "token_load", "prefix", "session", "weighted")


@dataclass(frozen=True)
class FleetGroup:
    count: int
    gpu_model: str
    dtype: str | None
    gpu_count: int


def parse_fleet(spec: str) -> list[FleetGroup]:
    """`4xB200,6xH100-80GB/tp2,6xA100-80GB/int4`: COUNTxGPU[/DTYPE][/tpN], comma-separated."""
    groups: list[FleetGroup] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        head, *options = item.split("/")
        count_text, sep, gpu = head.partition("x")
        if not sep or not count_text.strip().isdigit() or int(count_text) < 1 or not gpu:
            raise InvalidArgument(f"fleet item {quoted(item)}: expected COUNTxGPU[/DTYPE][/tpN]")
        dtype: str | None = None
        tp = 1
        for option in options:
            if option.lower().startswith("tp") and option[2:].isdigit():
                tp = int(option[2:])
            else:
                dtype = option
        groups.append(FleetGroup(int(count_text), gpu.strip(), dtype, tp))
    if not groups:
        raise InvalidArgument("fleet is empty")
    return groups


def build_fleet(
    spec: str, model: str, block_tokens_kv: int = 16
) -> list[tuple[str, EnginePerformance]]:
    fleet: list[tuple[str, EnginePerformance]] = []
    for group in parse_fleet(spec):
        perf = engine_performance(
            group.gpu_model,
            model,
            dtype=group.dtype,
            gpu_count=group.gpu_count,
            block_tokens=block_tokens_kv,
        )
        if not perf.fits:
            raise InvalidArgument(
                f"fleet: {model} does not fit on {group.gpu_count}× {perf.spec.gpu.name} "
                f"in {perf.spec.dtype}"
            )
        for i in range(group.count):
            fleet.append((f"{perf.spec.gpu.name.lower()}-{i}", perf))
    return fleet


def capacity_requests_per_s(trace: Trace, fleet: Sequence[tuple[str, EnginePerformance]]) -> float:
    total = 0.0
    n = len(trace.requests)
    for _, perf in fleet:
        cost = sum(
            perf.prefill_s(r.prompt_tokens) + r.output_tokens * perf.decode_s_per_token
            for r in trace.requests
        )
        total += n / cost
    return total


def scale_to_load(
    trace: Trace, fleet: Sequence[tuple[str, EnginePerformance]], load: float
) -> Trace:
    if not 0 < load <= 2:
        raise InvalidArgument("load must be in (0, 2]")
    offered = len(trace.requests) / trace.span_s
    wanted = load * capacity_requests_per_s(trace, fleet)
    return trace.scaled(offered / wanted)


@dataclass
class PolicyResult:
    policy: str
    hit_rate: float
    imbalance_p99: float
    ttft_mean_s: float
    ttft_p50_s: float
    ttft_p99_s: float
    output_tokens_per_s: float
    imbalance_series: list[tuple[float, float]]
    per_replica: dict[str, int]

    def figures(self) -> dict[str, float]:
        return {
            "hit_rate": round(self.hit_rate, 4),
            "imbalance_p99": round(self.imbalance_p99, 3),
            "ttft_mean_s": round(self.ttft_mean_s, 4),
            "ttft_p50_s": round(self.ttft_p50_s, 4),
            "ttft_p99_s": round(self.ttft_p99_s, 4),
            "output_tokens_per_s": round(self.output_tokens_per_s, 1),
        }


def quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def replay(
    trace: Trace,
    fleet: Sequence[tuple[str, EnginePerformance]],
    policy: str,
    config: PolicyConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> PolicyResult:
    """Replay `trace` (already scaled) on `fleet` with `policy`."""
    if policy not in POLICIES:
        raise InvalidArgument(
            f"policy {quoted(policy)} is not known (known: {', '.join(POLICIES)})"
        )
    router = Router(policy, config=config, block_tokens=trace.block_tokens, clock=lambda: now)
    sims: dict[str, SimReplica] = {}
    for rid, perf in fleet:
        sims[rid] = SimReplica(rid, perf, trace.block_tokens)
        router.upsert_replica(
            rid,
            state="ready",
            speed=speed_of(perf),
            gpu_model=perf.spec.gpu.name,
            variant=perf.spec.dtype,
        )
    now = trace.requests[0].arrival_s
    for sim in sims.values():
        sim.now = now
    tickets: dict[int, Ticket] = {}
    events: list[tuple[float, int, str]] = []
    versions: dict[str, int] = {}

    def schedule(sim: SimReplica) -> None:
        at = sim.next_event_s()
        versions[sim.id] = sim.version
        if at is not None:
            heapq.heappush(events, (at, sim.version, sim.id))

    ttfts: list[float] = []
    totals = {"prompt": 0, "hit": 0, "output": 0, "completed": 0}
    finished_at = now
    imbalance: list[tuple[float, float]] = []

    def settle(sim: SimReplica) -> None:
        nonlocal finished_at
        first_jobs, done_jobs = sim.collect()
        for job in first_jobs:
            router.first_token(tickets[job.index])
            assert job.first_token_s is not None
            ttfts.append(job.first_token_s - job.arrival_s)
            totals["prompt"] += job.prompt_tokens
            totals["hit"] += job.hit_tokens
        for job in done_jobs:
            router.finish(tickets.pop(job.index), job.output_tokens)
            totals["output"] += job.output_tokens
            totals["completed"] += 1
            finished_at = sim.now
            if progress is not None and totals["completed"] % 2000 == 0:
                progress(
                    f"{policy}: {totals['completed']}/{len(requests)} done at t={sim.now:.0f} s"
                )
        schedule(sim)

    requests = trace.requests
    next_scrape = now
    i = 0
    while i < len(requests) or events:
        arrival = requests[i].arrival_s if i < len(requests) else math.inf
        event = events[0][0] if events else math.inf
        if next_scrape <= min(arrival, event):
            now = next_scrape
            # Imbalance is sampled while requests arrive, not over the final drain.
            _scrape(router, sims, now, imbalance if i < len(requests) else None)
            next_scrape = now + SCRAPE_INTERVAL_S
            continue
        if arrival <= event:
            now = arrival
            r = requests[i]
            req = router.request(r.prompt_tokens, blocks=r.blocks, session=r.session)
            decision, ticket = router.route(req)
            if ticket is None:
                raise InvalidArgument(f"replay: {decision.reason}")
            tickets[i] = ticket
            sim = sims[ticket.replica]
            sim.arrive(Job(i, r.arrival_s, r.prompt_tokens, r.output_tokens, r.blocks), now)
            settle(sim)
            i += 1
            continue
        at, version, rid = heapq.heappop(events)
        if versions.get(rid) != version:
            continue
        now = at
        sim = sims[rid]
        sim.advance(now)
        settle(sim)
    span = max(1e-9, finished_at - requests[0].arrival_s)
    ratios = [v for _, v in imbalance]
    return PolicyResult(
        policy=policy,
        hit_rate=totals["hit"] / max(1, totals["prompt"]),
        imbalance_p99=quantile(ratios, 0.99),
        ttft_mean_s=sum(ttfts) / max(1, len(ttfts)),
        ttft_p50_s=quantile(ttfts, 0.5),
        ttft_p99_s=quantile(ttfts, 0.99),
        output_tokens_per_s=totals["output"] / span,
        imbalance_series=imbalance,
        per_replica={
            rid: sum(n for (_, r), n in router.decisions.items() if r == rid) for rid in sims
        },
    )


def _scrape(
    router: Router,
    sims: dict[str, SimReplica],
    now: float,
    imbalance: list[tuple[float, float]] | None,
) -> None:
    """Engine metrics to the router (as the gateway scrapes them) and one imbalance sample."""
    work: list[float] = []
    for rid, sim in sims.items():
        sim.advance(now)
        router.set_metrics(
            rid,
            EngineMetrics(sim.kv_usage(), sim.running, len(sim.waiting)),
        )
        work.append(sim.outstanding_work_s())
    mean = sum(work) / len(work)
    if imbalance is not None and mean > 0:
        imbalance.append((now, max(work) / mean))
