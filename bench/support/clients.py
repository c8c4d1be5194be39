"""Load generators of the scheduler benchmarks: worker processes with a
thread per client, started together, measured over one window.

A client loop is one of: `churn` (Allocate, Release the oldest of a few held),
`batched` (AllocateMany/ReleaseMany of K at a time), `ceiling` (the cheapest
unary RPC, grpc.health.v1.Health/Check, on the same channel) and `pg` (raw
PostgreSQL UPDATE+INSERT transactions)."""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from bench.support.fleet import MIG_PROFILES
from gpupool.v1 import scheduler_pb2, scheduler_pb2_grpc, types_pb2
from scheduler.security.channels import ClientCredentials, channel_ready, open_channel

HELD_PER_CLIENT = 4
CALL_TIMEOUT = 30.0
PLACED = types_pb2.ALLOCATION_STATE_PLACED
PENDING = types_pb2.ALLOCATION_STATE_PENDING
WORKLOADS = (
    types_pb2.WORKLOAD_CLASS_UNSPECIFIED,
    types_pb2.WORKLOAD_CLASS_LATENCY_CRITICAL,
    types_pb2.WORKLOAD_CLASS_THROUGHPUT,
    types_pb2.WORKLOAD_CLASS_BATCH,
)
Meter = Callable[[], dict[str, float]]


def request_templates(rng: random.Random, n: int = 64) -> list[scheduler_pb2.AllocateRequest]:
    """A per-client mix of whole, fractional and MIG requests, built once and
    reused (only request_id changes per call) to keep the client side cheap."""
    out = []
    for _ in range(n):
        r = scheduler_pb2.AllocateRequest(tenant=f"bench-{rng.randrange(8)}")
        roll = rng.random()
        if roll < 0.40:
            r.whole.count = rng.choice((1, 1, 1, 2, 2, 4, 8))
            if rng.random() < 0.3:
                r.gpu_models.extend(rng.choice((["H100-80GB"], ["H200", "B200"], ["A100-80GB"])))
        elif roll < 0.80:
            r.fraction.milli_gpu = rng.randrange(100, 901, 50)
            r.fraction.memory_mib = rng.randrange(2, 41) * 1024
            if rng.random() < 0.3:
                r.gpu_models.append("L40S" if r.fraction.memory_mib > 20 * 1024 else "L4")
        else:
            r.mig.profile = rng.choice(MIG_PROFILES)
        r.workload_class = rng.choice(WORKLOADS)
        r.priority_class = rng.choice(("normal", "normal", "high", "batch"))
        out.append(r)
    return out


# Scheduler.AllocateMany/ReleaseMany and their requests, looked up by name:
# the batched phase runs only where the generated code has them.
BATCHED_RPCS = ("AllocateMany", "ReleaseMany")
BATCHED_REQUESTS = ("AllocateManyRequest", "ReleaseManyRequest")


def batched_rpcs_available() -> bool:
    """Whether the generated code has Scheduler.AllocateMany and ReleaseMany."""
    service = scheduler_pb2.DESCRIPTOR.services_by_name["Scheduler"]
    return set(BATCHED_RPCS) <= set(service.methods_by_name)


@dataclass
class Stats:
    alloc_lat: list[float] = field(default_factory=list)  # seconds, measured window only
    release_lat: list[float] = field(default_factory=list)
    allocated: int = 0  # allocations answered (placed or pending) in the window
    placed: int = 0
    pending: int = 0
    ops: int = 0  # every completed call, warm-up included (for the progress bar)
    errors: Counter[str] = field(default_factory=Counter)
    why_pending: Counter[str] = field(default_factory=Counter)

    def count(self, allocation: Any) -> None:
        self.allocated += 1
        self.placed += allocation.state == PLACED
        if allocation.state == PENDING:
            self.pending += 1
            self.why_pending[allocation.message] += 1


def merge(parts: list[Stats]) -> Stats:
    total = Stats()
    for part in parts:
        for f in fields(Stats):  # lists concatenate, counts and Counters add up
            setattr(total, f.name, getattr(total, f.name) + getattr(part, f.name))
    return total


@dataclass(frozen=True)
class Job:
    """What every client of a phase does (pickled to the worker processes)."""

    kind: str  # churn, batched, ceiling or pg
    target: str  # the scheduler's address, or a libpq conninfo for pg
    credentials: ClientCredentials | None
    tag: str = ""  # request_id prefix: unique per phase, so no call is a retry of another
    batch_size: int = 16


def timed(stats: Stats, method: Any, request: Any) -> tuple[Any, float, float]:
    """One RPC: (response, or None after an error counted in stats; seconds; end time)."""
    t0 = time.perf_counter()
    try:
        response = method(request, timeout=CALL_TIMEOUT)
    except grpc.RpcError as exc:
        stats.errors[f"{type(request).__name__} {exc.code().name}"] += 1
        response = None
    stats.ops += 1
    return response, time.perf_counter() - t0, time.monotonic()


def _give_back(method: Any, requests: list[Any]) -> None:
    """After the window: release what a client still holds, unmeasured, so
    the next phase on the same scheduler starts from the same fleet."""
    for request in requests:
        with contextlib.suppress(grpc.RpcError):
            method(request, timeout=CALL_TIMEOUT)


def churn_client(job: Job, client: int, window: Any, stats: Stats) -> None:
    """Keep up to HELD_PER_CLIENT allocations: release the oldest, allocate anew."""
    channel = open_channel(job.target, job.credentials or ClientCredentials(insecure=True))
    stub = scheduler_pb2_grpc.SchedulerStub(channel)
    templates = request_templates(random.Random(client))
    start, end = window[0], window[1]
    held: deque[str] = deque()
    n, now = 0, time.monotonic()
    while now < end:
        if len(held) >= HELD_PER_CLIENT:
            release = scheduler_pb2.ReleaseRequest(allocation_id=held.popleft())
            ok, took, now = timed(stats, stub.Release, release)
            if ok is not None and start <= now < end:
                stats.release_lat.append(took)
        template = templates[n % len(templates)]
        template.request_id = f"{job.tag}c{client}-{n}"  # unique per (tenant, request_id)
        n += 1
        response, took, now = timed(stats, stub.Allocate, template)
        if response is None:
            continue
        held.append(response.allocation.id)
        if start <= now < end:
            stats.alloc_lat.append(took)
            stats.count(response.allocation)
    _give_back(stub.Release, [scheduler_pb2.ReleaseRequest(allocation_id=i) for i in held])
    channel.close()


def batched_client(job: Job, client: int, window: Any, stats: Stats) -> None:
    """AllocateMany of batch_size requests, then ReleaseMany of the previous
    batch: one batch held. alloc_lat/release_lat are per call, not per item."""
    channel = open_channel(job.target, job.credentials or ClientCredentials(insecure=True))
    stub = scheduler_pb2_grpc.SchedulerStub(channel)
    allocate_many, release_many = (getattr(stub, name) for name in BATCHED_RPCS)
    many, release_ids = (getattr(scheduler_pb2, name) for name in BATCHED_REQUESTS)
    templates = request_templates(random.Random(client))
    start, end = window[0], window[1]
    held: deque[list[str]] = deque()
    n, now = 0, time.monotonic()
    while now < end:
        if held:
            ok, took, now = timed(stats, release_many, release_ids(allocation_ids=held.popleft()))
            if ok is not None and start <= now < end:
                stats.release_lat.append(took)
        request = many()
        for _ in range(job.batch_size):
            template = templates[n % len(templates)]
            template.request_id = f"{job.tag}c{client}-{n}"
            n += 1
            request.requests.append(template)  # a copy
        response, took, now = timed(stats, allocate_many, request)
        if response is None:
            continue
        results = list(response.results)
        held.append([r.allocation.id for r in results if r.HasField("allocation")])
        if start <= now < end:
            stats.alloc_lat.append(took)
            for r in results:
                if r.HasField("allocation"):
                    stats.count(r.allocation)
                else:
                    stats.errors[f"AllocateMany item {r.error.code}"] += 1
    _give_back(release_many, [release_ids(allocation_ids=ids) for ids in held])
    channel.close()


def ceiling_client(job: Job, client: int, window: Any, stats: Stats) -> None:
    """grpc.health.v1.Health/Check in a loop: gRPC, TLS and the token's call
    credentials, with no scheduler work behind them."""
    channel = open_channel(job.target, job.credentials or ClientCredentials(insecure=True))
    check = health_pb2_grpc.HealthStub(channel).Check
    request = health_pb2.HealthCheckRequest()
    start, end = window[0], window[1]
    now = time.monotonic()
    while now < end:
        response, took, now = timed(stats, check, request)
        if response is not None and start <= now < end:
            stats.alloc_lat.append(took)
    channel.close()


def pg_client(job: Job, client: int, window: Any, stats: Stats) -> None:
    """One UPDATE of this client's own row plus one INSERT per transaction."""
    start, end = window[0], window[1]
    with psycopg.connect(job.target) as conn:
        now = time.monotonic()
        while now < end:
            t0 = time.perf_counter()
            conn.execute("UPDATE bench_counter SET n = n + 1 WHERE id = %s", (client,))
            conn.execute("INSERT INTO bench_log (client) VALUES (%s)", (client,))
            conn.commit()
            took, now = time.perf_counter() - t0, time.monotonic()
            stats.ops += 1
            if start <= now < end:
                stats.alloc_lat.append(took)


LOOPS: dict[str, Callable[[Job, int, Any, Stats], None]] = {
    "churn": churn_client,
    "batched": batched_client,
    "ceiling": ceiling_client,
    "pg": pg_client,
}


@dataclass
class Shared:
    """What the parent and its worker processes share (multiprocessing objects)."""

    ready: Any  # Barrier: every worker is connected
    go: Any  # Event: the window is set, start
    window: Any  # RawArray('d', 2): measured window [start, end) in time.monotonic()
    progress: Any  # RawArray('q', procs): calls done per worker
    results: Any  # Queue: one merged Stats per worker


def worker_main(job: Job, clients: list[int], index: int, sh: Shared) -> None:
    """One worker process: a thread per client, reporting progress as it goes."""
    stats = [Stats() for _ in clients]
    if job.credentials is not None and not channel_ready(job.target, job.credentials, 30):
        raise SystemExit("worker could not reach the scheduler")
    sh.ready.wait(timeout=120)
    sh.go.wait(timeout=120)
    loop = LOOPS[job.kind]
    threads = [
        threading.Thread(target=loop, args=(job, c, sh.window, s), daemon=True)
        for c, s in zip(clients, stats, strict=True)
    ]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        sh.progress[index] = sum(s.ops for s in stats)
        time.sleep(0.2)
    sh.results.put(merge(stats))


def cpu_seconds(pid: int | None) -> float:
    """User+system CPU of a process from /proc (Linux); NaN elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return math.nan


def run_phase(job: Job, clients: int, procs: int, seconds: float, warmup: float, label: str,
              console: Console, meter: Meter | None = None
              ) -> tuple[Stats, dict[str, float]]:  # fmt: skip
    """Spawn worker processes (not fork: grpc is already live in this one),
    align their start, show progress; returns merged stats and how much each
    of meter()'s counters grew over the measured window (read at its edges)."""
    ctx = mp.get_context("spawn")
    procs = max(1, min(procs, clients))
    sh = Shared(ctx.Barrier(procs + 1), ctx.Event(), ctx.RawArray("d", 2),
                ctx.RawArray("q", procs), ctx.Queue())  # fmt: skip
    workers = [
        ctx.Process(target=worker_main, args=(job, list(range(i, clients, procs)), i, sh))
        for i in range(procs)
    ]
    for w in workers:
        w.daemon = True
        w.start()
    sh.ready.wait(timeout=120)
    sh.window[0] = time.monotonic() + warmup
    sh.window[1] = sh.window[0] + seconds
    sh.go.set()
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[ops]} calls"))  # fmt: skip
    marks: list[dict[str, float]] = []
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(f"{label} ({clients} clients)", total=warmup + seconds, ops=0)
        for edge in (sh.window[0], sh.window[1]):
            while (left := edge - time.monotonic()) > 0:
                done = warmup + seconds - (sh.window[1] - time.monotonic())
                bar.update(task, completed=done, ops=sum(sh.progress))
                time.sleep(min(0.25, left))
            marks.append(meter() if meter else {})
    merged = merge([sh.results.get(timeout=CALL_TIMEOUT + 60) for _ in workers])
    for w in workers:
        w.join(timeout=10)
        if w.is_alive():
            w.terminate()
    return merged, {k: marks[1][k] - marks[0][k] for k in marks[0]}
