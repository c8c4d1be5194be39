"""One simulated run: a fleet, an arrival stream and a policy in; allocation per arrived % out.

Each pod is placed once through place() on a FleetSnapshot and committed with
its CPU and memory; a pod nothing can hold fails and is not retried. After
every arrival the allocated and the arrived milli-GPU are logged; the arrived
level is rounded to an integer % of capacity and the allocation ratio is
averaged per level, as the paper's analysis scripts do.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scheduler.placement import config_for_policy, place
from scheduler.placement.fragmentation import RequestMix
from scheduler.sim.inflate import DEFAULT_TUNE, inflate
from scheduler.sim.trace import TraceNode, TracePod, build_fleet

LEVELS = 131  # arrived % of GPU capacity, 0..130


@dataclass(frozen=True)
class SeedResult:
    policy: str
    seed: int
    # Mean GPU allocation ratio (%) over the arrivals at each arrived level; None if none.
    allocation: tuple[float | None, ...]
    placed: int
    failed: int
    seconds: float
    # CPU time of the run: on a shared machine, wall time also counts other processes.
    cpu_seconds: float = 0.0

    def unallocated(self, level: int) -> float | None:
        """Unallocated GPU % at `level`, from the nearest level at or below with arrivals."""
        for k in range(min(level, LEVELS - 1), -1, -1):
            value = self.allocation[k]
            if value is not None:
                return 100.0 - value
        return None


def node_order(nodes: Sequence[TraceNode], seed: int) -> dict[str, int]:
    """A fixed random rank per node for one seed: the paper's seeded name prefix."""
    names = [n.name for n in nodes]
    random.Random(f"node-order-{seed}").shuffle(names)
    return {name: rank for rank, name in enumerate(names)}


def simulate(
    nodes: Sequence[TraceNode],
    pods: Sequence[TracePod],
    policy: str,
    seed: int,
    tune: float = DEFAULT_TUNE,
    progress: Callable[[int, int], None] | None = None,
) -> SeedResult:
    """Replay `pods` (inflated for `seed`) on `nodes` under `policy`."""
    started, cpu_started = time.perf_counter(), time.process_time()
    snapshot = build_fleet(nodes)
    capacity = sum(n.gpus for n in nodes) * 1000
    arrivals = inflate(pods, capacity, seed, tune)
    # The live scheduler's config for the policy (config_for_policy), with the trace's
    # mix: FGD's typical types come from the trace as given, before inflation.
    config = config_for_policy(
        policy,
        request_mix=RequestMix.from_requests(p.request() for p in pods),
        node_order=node_order(nodes, seed),
        seed=seed,
        explain_failures=False,
    )
    sums = [0.0] * LEVELS
    counts = [0] * LEVELS
    arrived = allocated = placed = failed = 0
    for i, pod in enumerate(arrivals):
        request = pod.request()
        outcome = place(snapshot, request, config)
        if outcome.placement is None:
            failed += 1
        else:
            snapshot.reserve_placement(
                outcome.placement.node,
                outcome.placement.claims,
                request.cpu_milli,
                request.host_memory_mib,
            )
            if config.policy_state is not None:
                config.policy_state.placed(outcome.placement.node, request)
            allocated += pod.gpu_request
            placed += 1
        arrived += pod.gpu_request
        level = int(arrived * 100 / capacity + 0.5)
        if level < LEVELS:
            sums[level] += allocated * 100 / capacity
            counts[level] += 1
        if progress is not None and i % 500 == 0:
            progress(i, len(arrivals))
    allocation = tuple(s / c if c else None for s, c in zip(sums, counts, strict=True))
    return SeedResult(
        policy,
        seed,
        allocation,
        placed,
        failed,
        time.perf_counter() - started,
        time.process_time() - cpu_started,
    )
