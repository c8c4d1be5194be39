"""Victim selection on a 10,000-GPU fleet at 95% use: decision latency and lost work.

Run: python -m bench.preemption [--gpus 10000] [--scenarios 200] [--seed 7]

The fleet (bench.placement_micro's mix, some A100s in MIG mode) is filled by
place() with a mix of priority classes (60% batch, 25% normal, 15% high),
gangs of 1/2/4/8 GPUs and two-node 16-GPU pipelines, fractions and MIG
slices, each with its own start time and checkpoint cadence (every 5-60
minutes, or never). Each scenario draws a critical request that does not fit
now, times choose_victims() on it and runs choose_victims_naive() on the same
scenario for the lost-work comparison. Every answer of ours is checked with
place() on a full copy of the fleet, outside the timing. The last line is JSON.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from bench.placement_micro import build_fleet, percentile
from scheduler.domain.catalogue import CATALOGUE
from scheduler.domain.fleet import Claim, FleetSnapshot
from scheduler.domain.priorities import PRIORITY_CLASSES, PriorityClass
from scheduler.domain.requests import (
    Demand,
    FractionDemand,
    MigDemand,
    PlacementRequest,
    WholeDemand,
)
from scheduler.placement import place
from scheduler.preemption import (
    RunningAllocation,
    VictimChoice,
    choose_victims,
    choose_victims_naive,
    gpus_held,
)

NOW = 1_700_000_000.0
TARGET_USE = 0.95
CLASS_MIX = (("batch", 0.60), ("normal", 0.25), ("high", 0.15))
MIG_MODELS = ("A100-80GB", "A100-40GB")
NON_MIG_MODELS = ("H100-80GB", "H200", "B200", "A100-80GB", "A100-40GB", "L40S", "L4")
# Critical work asks for these, and they run full; the free room is on the rest.
HOT_MODELS = ("H100-80GB", "H200", "B200", "A100-80GB")
NEVER_CHECKPOINTS = 0.2

Shape = tuple[Demand, frozenset[str], int]  # demand, models it may use, placements it spans
_job_ids = itertools.count()


def _pick_class(rng: random.Random) -> PriorityClass:
    roll = rng.random()
    for name, share in CLASS_MIX:
        if roll < share:
            return PRIORITY_CLASSES[name]
        roll -= share
    return PRIORITY_CLASSES[CLASS_MIX[-1][0]]


def _running_shape(rng: random.Random) -> Shape:
    roll = rng.random()
    if roll < 0.02:
        return WholeDemand(8), frozenset(), 2  # a pipeline over two nodes
    if roll < 0.60:
        return WholeDemand(rng.choice((1, 1, 1, 2, 2, 4, 8))), frozenset(), 1
    if roll < 0.82:
        # Shares sized to the model, so a GPU packs to full compute and memory together.
        model = rng.choice(NON_MIG_MODELS)
        share = rng.choice((0.25, 0.25, 0.5))
        memory = int(CATALOGUE[model].memory_mib * share)
        return FractionDemand(int(1000 * share), memory), frozenset({model}), 1
    return _mig_shape(rng)


def _mig_shape(rng: random.Random) -> Shape:
    model = rng.choice(MIG_MODELS)
    profile = rng.choice(CATALOGUE[model].mig_profiles[:6])
    return MigDemand(profile.name), frozenset({model}), 1


def _timeline(rng: random.Random, cls: PriorityClass) -> tuple[float, float, float]:
    """(started_at, last_checkpoint_at, protected_until) for a job running now."""
    age = rng.expovariate(1 / (6 * 3600)) + rng.uniform(0, 600)
    started = NOW - age
    last = started
    if rng.random() >= NEVER_CHECKPOINTS:
        every = rng.uniform(5, 60) * 60
        last = started + (age // every) * every
    return started, last, started + cls.min_runtime_s


def fill(snapshot: FleetSnapshot, rng: random.Random) -> list[RunningAllocation]:
    """Random jobs holding TARGET_USE of the fleet's GPU-equivalents.

    The fleet is packed until nothing more fits (MIG GPUs first: mixed draws
    alone leave them half empty), then random jobs on the models critical work
    does not ask for end until use is down to the target. So the hot models
    and MIG stay full, as in a busy fleet, instead of keeping the free 5% as
    empty nodes where any request would fit.
    """
    jobs: list[RunningAllocation] = []
    full = float(len(snapshot.gpus))
    _fill(snapshot, rng, jobs, _mig_shape, target=full, patience=300)
    _fill(snapshot, rng, jobs, _running_shape, target=full, patience=300)
    used = sum(gpus_held(j.claims) for j in jobs)
    rng.shuffle(jobs)
    kept: list[RunningAllocation] = []
    hot = {g.id for g in snapshot.gpus.values() if g.model in HOT_MODELS or g.mig_enabled}
    for job in jobs:
        if used > TARGET_USE * full and not any(c.gpu_id in hot for c in job.claims):
            snapshot.release(job.claims)
            used -= gpus_held(job.claims)
        else:
            kept.append(job)
    return kept


def _fill(
    snapshot: FleetSnapshot,
    rng: random.Random,
    jobs: list[RunningAllocation],
    draw: Callable[[random.Random], Shape],
    target: float,
    patience: int,
) -> None:
    """Add jobs drawn by `draw` until `target` GPU-equivalents are held or `patience` misses."""
    used = sum(gpus_held(j.claims) for j in jobs)
    misses = 0
    while used < target and misses < patience:
        demand, models, parts = draw(rng)
        claims: list[Claim] = []
        for _ in range(parts):
            placed = place(snapshot, PlacementRequest(demand, gpu_models=models)).placement
            if placed is None:
                break
            snapshot.reserve(placed.claims)
            claims.extend(placed.claims)
        if len(claims) < parts * _claims_per_part(demand):
            snapshot.release(claims)
            misses += 1
            continue
        misses = 0
        cls = _pick_class(rng)
        started, last, protected = _timeline(rng, cls)
        job = RunningAllocation(
            id=f"job-{next(_job_ids):05d}",
            priority=cls.value,
            preemptible=cls.preemptible,
            protected_until=protected,
            claims=tuple(claims),
            last_checkpoint_at=last,
            started_at=started,
            tenant=f"team-{rng.randrange(20)}",
        )
        jobs.append(job)
        used += gpus_held(claims)


def _claims_per_part(demand: Demand) -> int:
    return demand.count if isinstance(demand, WholeDemand) else 1


def critical_request(rng: random.Random) -> tuple[str, PlacementRequest]:
    """(kind, request) for a critical job, on one or two hot models."""
    roll = rng.random()
    models = frozenset(rng.sample(HOT_MODELS, rng.choice((1, 1, 2))))
    demand: Demand
    if roll < 0.60:
        count = rng.choice((1, 2, 4, 8))
        demand, kind = WholeDemand(count), f"whole {count}"
    elif roll < 0.80:
        model = rng.choice(HOT_MODELS)
        share = rng.choice((0.25, 0.5))
        demand = FractionDemand(int(1000 * share), int(CATALOGUE[model].memory_mib * share))
        models, kind = frozenset({model}), "fraction"
    else:
        model = rng.choice(MIG_MODELS)
        demand = MigDemand(rng.choice(CATALOGUE[model].mig_profiles[1:5]).name)
        models, kind = frozenset({model}), "MIG"
    return kind, PlacementRequest(demand, gpu_models=models, priority=1000)


@dataclass
class Tally:
    scenarios: int = 0
    solved: int = 0
    ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # thread CPU time: immune to other load
    lost_ours: float = 0.0
    lost_naive: float = 0.0
    victims_ours: int = 0
    victims_naive: int = 0


def verify(snapshot: FleetSnapshot, request: PlacementRequest, jobs: dict[str, RunningAllocation],
           choice: VictimChoice) -> None:  # fmt: skip
    what_if = snapshot.copy()
    what_if.release([c for v in choice.victims for c in jobs[v].claims])
    if place(what_if, request).placement is None:
        raise AssertionError(f"victims {choice.victims} do not make room for {request}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gpus", type=int, default=10_000)
    parser.add_argument("--scenarios", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    console = Console(width=150)
    rng = random.Random(args.seed)
    snapshot = build_fleet(args.gpus, rng)
    jobs = fill(snapshot, rng)
    by_id = {j.id: j for j in jobs}
    used = sum(gpus_held(j.claims) for j in jobs) / len(snapshot.gpus)
    console.print(
        f"fleet: {len(snapshot.gpus)} GPUs on {len(snapshot.nodes)} nodes, {len(jobs)} jobs, "
        f"{used:.1%} held; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    # The fleet is long-lived: keep the cyclic GC from re-walking it (a server would too).
    gc.freeze()
    tallies: dict[str, Tally] = defaultdict(Tally)
    total = Tally()
    fitting = 0
    for _ in range(args.scenarios):
        # A scheduler looks for victims only when place() fails: skip what fits now.
        kind, request = critical_request(rng)
        while place(snapshot, request).placement is not None:
            fitting += 1
            if fitting > 100 * args.scenarios:
                raise SystemExit("nearly every request fits: the fleet is too empty to preempt")
            kind, request = critical_request(rng)
        started, cpu_started = time.perf_counter(), time.thread_time()
        ours = choose_victims(snapshot, request, jobs, NOW)
        elapsed_ms = (time.perf_counter() - started) * 1000
        cpu_ms = (time.thread_time() - cpu_started) * 1000
        naive = choose_victims_naive(snapshot, request, jobs, NOW)
        for tally in (tallies[kind], total):
            tally.scenarios += 1
            tally.ms.append(elapsed_ms)
            tally.cpu_ms.append(cpu_ms)
        if (ours is None) != (naive is None):
            raise AssertionError(f"only one of ours and naive placed {request}")
        if ours is None or naive is None:
            continue
        verify(snapshot, request, by_id, ours)
        for tally in (tallies[kind], total):
            tally.solved += 1
            tally.lost_ours += ours.lost_gpu_seconds
            tally.lost_naive += naive.lost_gpu_seconds
            tally.victims_ours += len(ours.victims)
            tally.victims_naive += len(naive.victims)
    console.print(_table(tallies, total))
    console.print(f"{fitting} drawn requests fitted without preemption and were skipped")
    result = {
        "decision_p50_ms": round(percentile(total.ms, 50), 2),
        "decision_p99_ms": round(percentile(total.ms, 99), 2),
        "lost_gpu_s_ours": round(total.lost_ours),
        "lost_gpu_s_naive": round(total.lost_naive),
        "scenarios": total.scenarios,
        "solved": total.solved,
        "gpus": len(snapshot.gpus),
        "decision_cpu_p99_ms": round(percentile(total.cpu_ms, 99), 2),
        "load_avg_1m": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(result))


def _table(tallies: dict[str, Tally], total: Tally) -> Table:
    table = Table(title="Victim selection: ours vs naive (lowest priority, youngest first)")
    for column in ("request", "scenarios", "solved", "p50 ms", "p99 ms", "max ms", "CPU p99 ms"):
        table.add_column(column, justify="right")
    for column in ("lost GPU-s ours", "lost GPU-s naive", "saved", "victims ours", "naive"):
        table.add_column(column, justify="right")
    order = sorted(tallies, key=lambda k: (k[0] != "w", int(k.split()[1]) if " " in k else 0, k))
    for kind, tally in [*((k, tallies[k]) for k in order), ("all", total)]:
        saved = 1 - tally.lost_ours / tally.lost_naive if tally.lost_naive else 0.0
        table.add_row(
            kind,
            str(tally.scenarios),
            str(tally.solved),
            f"{percentile(tally.ms, 50):.1f}",
            f"{percentile(tally.ms, 99):.1f}",
            f"{max(tally.ms, default=0.0):.1f}",
            f"{percentile(tally.cpu_ms, 99):.1f}",
            f"{tally.lost_ours:,.0f}",
            f"{tally.lost_naive:,.0f}",
            f"{saved:.0%}",
            str(tally.victims_ours),
            str(tally.victims_naive),
        )
    return table


if __name__ == "__main__":
    main()
