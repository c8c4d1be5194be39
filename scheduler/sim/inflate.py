"""Workload inflation as in the paper's simulator (`-tune 1.3`, `-tuneseed`).

The trace is shuffled (seeded), then grown by drawing its pods uniformly with
replacement, appended in draw order, until the next draw would push the total
GPU request past tune x capacity (the check uses the drawn pod's per-GPU milli,
as the authors' code does). A trace already above the target loses random pods.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from scheduler.sim.trace import TracePod

DEFAULT_TUNE = 1.3


def inflate(
    pods: Sequence[TracePod], capacity_milli: int, seed: int, tune: float = DEFAULT_TUNE
) -> list[TracePod]:
    """The arrival order for one seed: deterministic for (pods, capacity, seed, tune)."""
    rng = random.Random(seed)
    arrivals = list(pods)
    rng.shuffle(arrivals)
    target = tune * capacity_milli
    total = sum(p.gpu_request for p in arrivals)
    if total > target:
        while arrivals and total > target:
            total -= arrivals.pop(rng.randrange(len(arrivals))).gpu_request
        return arrivals
    gpu_pods = [p for p in pods if p.gpu_request]
    if not gpu_pods:
        return arrivals  # nothing could ever reach the target
    drawn = 0
    while True:
        pod = pods[rng.randrange(len(pods))]
        if total + pod.gpu_milli > target:
            break
        drawn += 1
        arrivals.append(replace(pod, name=f"{pod.name}-tune{drawn}"))
        total += pod.gpu_request
    return arrivals
