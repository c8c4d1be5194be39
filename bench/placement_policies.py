"""Packing policies: one seed of the default openb trace per policy, and one place() on a
synthetic 10,000-GPU fleet with FGD and the default packing policy against the old
default walk, in the same run.

Run: python -m bench.placement_policies [--seed 42] [--gpus 10000] [--ops 3000]
     [--policies random,dotprod,clustering,packing,bestfit,fgd,<default policy>]
Prints seconds per seed per policy, then p50/p99 of place() per policy on the fleet
(kept near 70 % use by churn, as bench.placement_micro does) and the FGD/default ratio;
the last line is JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time

from bench.placement_micro import TARGET_USE, build_fleet, gpu_share, percentile, random_request
from scheduler.domain.fleet import Claim, FleetSnapshot
from scheduler.domain.requests import MigDemand, PlacementRequest
from scheduler.placement import PlacementConfig, place
from scheduler.placement.fragmentation import RequestMix
from scheduler.placement.policies import DEFAULT_PACKING_POLICY
from scheduler.sim.run import simulate
from scheduler.sim.trace import read_nodes, read_pods
from scheduler.sim.traces import default_nodes, resolve_pods

TRACE_POLICIES = f"random,dotprod,clustering,packing,bestfit,fgd,{DEFAULT_PACKING_POLICY}"


def trace_seconds(policies: list[str], seed: int) -> dict[str, dict[str, float]]:
    nodes, pods = read_nodes(default_nodes()), read_pods(resolve_pods("default"))
    figures = {}
    for policy in policies:
        result = simulate(nodes, pods, policy, seed)
        figures[policy] = {
            "seconds": round(result.seconds, 2),
            "unallocated_pct_at_100": round(result.unallocated(100) or 0.0, 2),
        }
        print(
            f"trace seed {seed}, {policy}: {result.seconds:.1f} s, "
            f"unallocated at 100 %: {figures[policy]['unallocated_pct_at_100']} %"
        )
    return figures


def gpu_requests(rng: random.Random, count: int) -> list[PlacementRequest]:
    """Fractional and whole-GPU requests (packing policies leave MIG to the default walk)."""
    requests: list[PlacementRequest] = []
    while len(requests) < count:
        request = random_request(rng)
        if not isinstance(request.demand, MigDemand):
            requests.append(request)
    return requests


def churn_timings(
    snapshot: FleetSnapshot, config: PlacementConfig, requests: list[PlacementRequest], seed: int
) -> list[float]:
    """Microseconds per place(), committing successes and releasing at random above target use."""
    rng = random.Random(seed)
    live: list[tuple[Claim, ...]] = []
    used, total = 0.0, float(len(snapshot.gpus))
    timings: list[float] = []
    for request in requests:
        while used / total >= TARGET_USE and live:
            claims = live.pop(rng.randrange(len(live)))
            snapshot.release(claims)
            used -= gpu_share(claims)
        started = time.perf_counter()
        outcome = place(snapshot, request, config)
        timings.append((time.perf_counter() - started) * 1e6)
        if outcome.placement is not None:
            snapshot.reserve(outcome.placement.claims)
            live.append(outcome.placement.claims)
            used += gpu_share(outcome.placement.claims)
    return timings


def fleet_timings(gpus: int, ops: int, seed: int) -> dict[str, dict[str, float]]:
    rng = random.Random(seed)
    base = build_fleet(gpus, rng)
    warmup = gpu_requests(rng, ops)
    measured = gpu_requests(rng, ops)
    mix = RequestMix.from_requests(warmup)
    gc.freeze()  # the fleet is long-lived, as in a server
    figures = {}
    for policy in ("default", "fgd", DEFAULT_PACKING_POLICY):
        snapshot = base.copy()
        config = PlacementConfig(packing_policy=policy, request_mix=mix, seed=seed)
        churn_timings(snapshot, config, warmup, seed)  # fill to the target use, warm memos
        timings = churn_timings(snapshot, config, measured, seed + 1)
        figures[policy] = {
            "p50_ms": round(percentile(timings, 50) / 1000, 3),
            "p99_ms": round(percentile(timings, 99) / 1000, 3),
        }
        print(
            f"{len(snapshot.gpus)}-GPU fleet, {policy}: place() p50 "
            f"{figures[policy]['p50_ms']} ms, p99 {figures[policy]['p99_ms']} ms"
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--gpus", type=int, default=10_000)
    parser.add_argument("--ops", type=int, default=3_000)
    parser.add_argument("--policies", default=TRACE_POLICIES)
    args = parser.parse_args()
    trace = trace_seconds([p for p in args.policies.split(",") if p], args.seed)
    fleet = fleet_timings(args.gpus, args.ops, args.seed)
    ratio = fleet[DEFAULT_PACKING_POLICY]["p50_ms"] / max(fleet["default"]["p50_ms"], 1e-9)
    print(f"{DEFAULT_PACKING_POLICY} / default walk place() median: {ratio:.1f}x")
    result = {
        "trace_seed": args.seed,
        "trace_seconds": {p: f["seconds"] for p, f in trace.items()},
        "trace_unallocated_pct_at_100": {p: f["unallocated_pct_at_100"] for p, f in trace.items()},
        "fleet_gpus": args.gpus,
        "place_ms": fleet,
        "new_default_over_default_walk_p50": round(ratio, 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
