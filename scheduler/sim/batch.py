"""Many simulated runs (traces x policies x seeds), in this process or a few worker processes."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
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


def _cache_path(cache: Path, job: Job) -> Path:
    """One file per run, named by everything that decides it (the files by size and age)."""
    files = [job.nodes, job.pods]
    stamp = "-".join(f"{f.stat().st_size}.{int(f.stat().st_mtime)}" for f in files)
    key = f"{job.trace}|{job.policy}|{job.seed}|{job.tune}|{job.mix}|{stamp}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache / f"{job.trace}-{job.policy}-{job.seed}-{digest}.json"


def _load(path: Path) -> SeedResult | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    data["allocation"] = tuple(data["allocation"])
    return SeedResult(**data)


def _store(path: Path, result: SeedResult) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(result)))


def run_jobs(
    jobs: Sequence[Job],
    workers: int = 1,
    done: Callable[[Job, SeedResult], None] | None = None,
    cache: Path | None = None,
) -> dict[tuple[str, str], list[SeedResult]]:
    """(trace, policy) -> results in seed order. `workers` > 1 runs them in processes.

    With `cache`, each finished run is kept there and a run already kept is not
    redone: a long table can be built in parts. The cache does not know the code;
    empty it after changing a policy.
    """
    results: dict[Job, SeedResult] = {}
    todo: list[Job] = []
    for job in jobs:
        kept = _load(_cache_path(cache, job)) if cache is not None else None
        if kept is None:
            todo.append(job)
        else:
            results[job] = kept
            if done is not None:
                done(job, kept)

    def finish(job: Job, result: SeedResult) -> None:
        results[job] = result
        if cache is not None:
            _store(_cache_path(cache, job), result)
        if done is not None:
            done(job, result)

    if workers <= 1:
        for job in todo:
            finish(job, run_job(job))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(run_job, job): job for job in todo}
            for future in as_completed(futures):
                finish(futures[future], future.result())
    grouped: dict[tuple[str, str], list[SeedResult]] = {}
    for job in jobs:  # in the order asked for
        grouped.setdefault((job.trace, job.policy), []).append(results[job])
    return grouped
