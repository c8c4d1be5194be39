"""Many simulated runs (traces x policies x seeds), in this process or a few worker processes."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from scheduler.sim.run import SeedResult, simulate
from scheduler.sim.trace import TraceNode, TracePod, read_nodes, read_pods
from scheduler.sim.variants import derive


@dataclass(frozen=True)
class Job:
    trace: str  # the name results are filed under
    nodes: Path
    pods: Path
    policy: str
    seed: int
    tune: float
    mix: str | None = None  # a resampled approximation of a variant (variants.py)


@functools.lru_cache(maxsize=32)
def _nodes(path: Path) -> tuple[TraceNode, ...]:
    return tuple(read_nodes(path))


@functools.lru_cache(maxsize=32)
def _pods(path: Path) -> tuple[TracePod, ...]:
    return tuple(read_pods(path))


def run_job(job: Job) -> SeedResult:
    nodes, pods = _nodes(job.nodes), _pods(job.pods)
    if job.mix is not None:
        pods = tuple(derive(pods, job.mix, nodes))
    return simulate(nodes, pods, job.policy, job.seed, job.tune)


def run_jobs(
    jobs: Sequence[Job],
    workers: int = 1,
    done: Callable[[Job, SeedResult], None] | None = None,
) -> dict[tuple[str, str], list[SeedResult]]:
    """(trace, policy) -> results in seed order. `workers` > 1 runs them in processes."""
    results: dict[Job, SeedResult] = {}
    if workers <= 1:
        for job in jobs:
            results[job] = run_job(job)
            if done is not None:
                done(job, results[job])
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(run_job, job): job for job in jobs}
            for future in as_completed(futures):
                job = futures[future]
                results[job] = future.result()
                if done is not None:
                    done(job, results[job])
    grouped: dict[tuple[str, str], list[SeedResult]] = {}
    for job in jobs:  # in the order asked for
        grouped.setdefault((job.trace, job.policy), []).append(results[job])
    return grouped
