"""Microbenchmark of place() on a 10,000-GPU mixed fleet under churn at ~70% use.

Run: python -m bench.placement_micro [--gpus 10000] [--ops 20000] [--seed 1]
     [--policies default,fgd+mem]
For each packing policy in the same run (the old default walk first, then the
default a user gets now, fed the request mix live as the allocator does), on the
same fleet and requests: p50/p99 of place() (successful and failed separately)
and placements per second counting place()+reserve()+release(); the last line is
JSON, keyed by policy, the first policy's figures also at the top level.

Latencies are wall clock (what a caller waits); failed place() is also given in
CPU time of the thread (failed_place_cpu_p99_us), with the time the thread
waited for a core during the slowest 1 % of failed calls (failed_tail_wait_share,
from /proc/thread-self/schedstat, Linux) and the garbage collector's pauses in
the measured window (gc_pause_ms, gc_full_collections): on a loaded machine the
wall tail is mostly waiting for a core, which CPU time leaves out.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import statistics
import time
from dataclasses import dataclass, field

from scheduler.domain.catalogue import CATALOGUE
from scheduler.domain.fleet import Claim, FleetSnapshot, GpuView, NodeView
from scheduler.domain.requests import (
    Demand,
    FractionDemand,
    MigDemand,
    PlacementRequest,
    WholeDemand,
)
from scheduler.placement import PlacementConfig, config_for_policy, place
from scheduler.placement.policies import DEFAULT_PACKING_POLICY

GPUS_PER_NODE = 8
# (model, share of nodes, share of those nodes in MIG mode)
FLEET_MIX = (
    ("H100-80GB", 0.28, 0.0),
    ("H200", 0.14, 0.0),
    ("B200", 0.10, 0.0),
    ("A100-80GB", 0.18, 0.35),
    ("A100-40GB", 0.10, 0.5),
    ("L40S", 0.10, 0.0),
    ("L4", 0.10, 0.0),
)
TARGET_USE = 0.70


def build_fleet(gpu_count: int, rng: random.Random) -> FleetSnapshot:
    snapshot = FleetSnapshot()
    nodes = gpu_count // GPUS_PER_NODE
    gpu_id = 0
    for n in range(nodes):
        model, mig_share = _pick_model(n / nodes, rng)
        mig = rng.random() < mig_share
        nvlinked = CATALOGUE[model].nvlink_gbps > 0
        name = f"node-{n:05d}"
        gpus = []
        for index in range(GPUS_PER_NODE):
            peers = tuple(i for i in range(GPUS_PER_NODE) if i != index) if nvlinked else ()
            gpus.append(
                GpuView(
                    id=gpu_id,
                    uuid=f"GPU-{gpu_id:08d}",
                    node=name,
                    index=index,
                    model=model,
                    memory_mib=CATALOGUE[model].memory_mib,
                    mig_enabled=mig,
                    nvlink_peers=peers,
                )
            )
            gpu_id += 1
        snapshot.upsert_node(NodeView(name=name, gpus=gpus))
    return snapshot


def _pick_model(position: float, rng: random.Random) -> tuple[str, float]:
    # Position in the fleet decides the model, so the mix is exact, not sampled.
    edge = 0.0
    for model, share, mig_share in FLEET_MIX:
        edge += share
        if position < edge:
            return model, mig_share
    return FLEET_MIX[-1][0], FLEET_MIX[-1][2]


def random_request(rng: random.Random) -> PlacementRequest:
    roll = rng.random()
    models: frozenset[str] = frozenset()
    demand: Demand
    if roll < 0.55:
        demand = WholeDemand(rng.choice((1, 1, 1, 2, 2, 4, 8)))
        if rng.random() < 0.3:
            models = frozenset({rng.choice(("H100-80GB", "H200", "B200", "L40S", "L4"))})
    elif roll < 0.90:
        demand = FractionDemand(
            milli=rng.choice((100, 250, 500)), memory_mib=rng.choice((2, 8, 16, 24, 40)) * 1024
        )
        if rng.random() < 0.2:
            models = frozenset({rng.choice(("L4", "L40S", "H100-80GB"))})
    else:
        model = rng.choice(("A100-80GB", "A100-40GB"))
        profile = rng.choice(CATALOGUE[model].mig_profiles[:6])  # 7g is rarely asked for
        demand = MigDemand(profile.name)
    return PlacementRequest(demand=demand, gpu_models=models)


def gpu_share(claims: tuple[Claim, ...]) -> float:
    """GPU-equivalents a placement holds: milli for shares, memory slices for MIG."""
    return sum(c.milli / 1000 if c.mig_profile is None else c.mig_size / 8 for c in claims)


@dataclass
class Figures:
    ok_us: list[float] = field(default_factory=list)
    failed_us: list[float] = field(default_factory=list)
    failed_cpu_us: list[float] = field(default_factory=list)
    failed_wait_us: list[float] = field(default_factory=list)  # run-queue wait (NaN: unknown)
    placed: int = 0
    busy_s: float = 0.0


class Churn:
    """Places random requests while use is under the target, releases at random above it."""

    def __init__(
        self, snapshot: FleetSnapshot, rng: random.Random, config: PlacementConfig
    ) -> None:
        self.snapshot = snapshot
        self.rng = rng
        self.config = config
        self.live: list[tuple[Claim, ...]] = []
        self.used = 0.0

    def run(self, ops: int) -> Figures:
        figures = Figures()
        total = float(len(self.snapshot.gpus))
        clock, cpu, waited = time.perf_counter, time.thread_time, RunQueueWait()
        for _ in range(ops):
            if self.used / total >= TARGET_USE and self.live:
                figures.busy_s += self._release_one()
                continue
            request = random_request(self.rng)
            mix = self.config.request_mix
            wait_started = waited()
            started, cpu_started = clock(), cpu()
            if mix is not None:  # as the allocator records each new request
                mix.record(request)
            outcome = place(self.snapshot, request, self.config)
            elapsed = clock() - started
            if outcome.placement is None:
                figures.failed_us.append(elapsed * 1e6)
                figures.failed_cpu_us.append((cpu() - cpu_started) * 1e6)
                figures.failed_wait_us.append((waited() - wait_started) / 1e3)
                # A full pool: let something finish, as a waiting request would.
                figures.busy_s += elapsed + (self._release_one() if self.live else 0.0)
                continue
            self.snapshot.reserve(outcome.placement.claims)
            figures.busy_s += clock() - started
            figures.ok_us.append(elapsed * 1e6)
            figures.placed += 1
            self.live.append(outcome.placement.claims)
            self.used += gpu_share(outcome.placement.claims)
        return figures

    def _release_one(self) -> float:
        claims = self.live.pop(self.rng.randrange(len(self.live)))
        started = time.perf_counter()
        self.snapshot.release(claims)
        elapsed = time.perf_counter() - started
        self.used -= gpu_share(claims)
        return elapsed


def percentile(values: list[float], q: int) -> float:
    if not values:
        return 0.0
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


def churned_fleet(gpus: int, seed: int, warmup_ops: int, policy: str = "default") -> Churn:
    """A fleet of `gpus` GPUs churned up to the target use under `policy`."""
    rng = random.Random(seed)
    snapshot = build_fleet(gpus, rng)
    # The fleet is long-lived: keep the cyclic GC from re-walking it (a server would too).
    gc.freeze()
    churn = Churn(snapshot, rng, config_for_policy(policy))
    # Up to the target use first (a bigger fleet needs more placements for it),
    # then `warmup_ops` of churn there.
    total = len(snapshot.gpus)
    while churn.used / total < TARGET_USE - 0.01:
        churn.run(1000)
    churn.run(warmup_ops)
    return churn


class RunQueueWait:
    """Nanoseconds this thread has waited for a core (schedstat's second field; NaN off Linux)."""

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            self._fd = None

    def __call__(self) -> float:
        if self._fd is None:
            return math.nan
        return float(os.pread(self._fd, 128, 0).split()[1])


def tail_wait_share(wall_us: list[float], wait_us: list[float]) -> float:
    """Of the wall time of the slowest 1 % of calls, the share spent waiting for a core."""
    slowest = sorted(zip(wall_us, wait_us, strict=True), reverse=True)[
        : max(1, len(wall_us) // 100)
    ]
    wall = sum(w for w, _ in slowest)
    return sum(q for _, q in slowest) / wall if wall else math.nan


class GcPauses:
    """The garbage collector's pauses while active (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.seconds += time.perf_counter() - self._started
        self.full += info["generation"] == 2

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self)


def measure(gpus: int, ops: int, seed: int, policy: str) -> dict[str, float | int]:
    churn = churned_fleet(gpus, seed, ops, policy)
    snapshot = churn.snapshot
    with GcPauses() as pauses:
        figures = churn.run(ops)
    result: dict[str, float | int] = {
        "gpus": len(snapshot.gpus),
        "place_p50_us": round(percentile(figures.ok_us, 50), 1),
        "place_p99_us": round(percentile(figures.ok_us, 99), 1),
        "failed_place_p50_us": round(percentile(figures.failed_us, 50), 1),
        "failed_place_p99_us": round(percentile(figures.failed_us, 99), 1),
        "failed_place_cpu_p99_us": round(percentile(figures.failed_cpu_us, 99), 1),
        "failed_tail_wait_share": round(
            tail_wait_share(figures.failed_us, figures.failed_wait_us), 2
        ),
        "gc_pause_ms": round(pauses.seconds * 1000, 1),
        "gc_full_collections": pauses.full,
        "failed_share": round(
            len(figures.failed_us) / max(1, len(figures.failed_us) + figures.placed), 3
        ),
        "placements_per_s": round(figures.placed / figures.busy_s),
    }
    use = churn.used / len(snapshot.gpus)
    print(f"[{policy}] fleet: {result['gpus']} GPUs, {len(snapshot.nodes)} nodes, {use:.0%} in use")
    print(
        f"[{policy}] successful place(): p50 {result['place_p50_us']} us, "
        f"p99 {result['place_p99_us']} us"
    )
    print(
        f"[{policy}] failed place() (explained): p50 {result['failed_place_p50_us']} us, "
        f"p99 {result['failed_place_p99_us']} us (CPU time p99 "
        f"{result['failed_place_cpu_p99_us']} us), share {result['failed_share']}; "
        f"the slowest 1 % waited for a core {result['failed_tail_wait_share']:.0%} of their time"
    )
    print(
        f"[{policy}] garbage collector in the window: {result['gc_pause_ms']} ms, "
        f"{result['gc_full_collections']} full collections"
    )
    print(f"[{policy}] placements per second (place+reserve+release): {result['placements_per_s']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gpus", type=int, default=10_000)
    parser.add_argument("--ops", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--policies", default=f"default,{DEFAULT_PACKING_POLICY}")
    args = parser.parse_args()
    policies = [p for p in args.policies.split(",") if p]
    by_policy = {p: measure(args.gpus, args.ops, args.seed, p) for p in policies}
    first = by_policy[policies[0]]
    if len(policies) > 1:
        last = by_policy[policies[-1]]
        ratio = last["place_p50_us"] / max(first["place_p50_us"], 1e-9)
        print(f"{policies[-1]} / {policies[0]} place() median: {ratio:.2f}x")
    print(json.dumps({**first, "policies": by_policy}))


if __name__ == "__main__":
    main()
