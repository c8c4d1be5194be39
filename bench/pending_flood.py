"""A flood of allocations that cannot be placed now, and what it does to
everyone else: Allocate latency of a small probe client during and after the
flood, the scheduler's CPU while the full queue sits idle, and whether a
follower replica leaves the queue to the leader.

On a fresh database, a TLS scheduler (`gpupool serve --max-pending-per-tenant`
raised for the flood) with the 10,000-GPU fleet of bench.support.fleet registered and
heartbeating, and a second replica on the same database (a follower):

1. a filler tenant takes every B200 and H200 node whole (8 GPUs each);
2. the flood: tenant `flood` sends --flood Allocate calls for 8 B200 GPUs
   and 19 more tenants ask for whole H200/B200 nodes, --pending in all;
   every one of them waits (pending: it fits once the filler releases), and
   --unschedulable of them can never be placed (8 L4 GPUs for a
   latency-critical workload, a class the L4 is not allowed for);
3. --after-seconds more with the queue full;
4. --idle-seconds with no client calls at all, the queue still full; the
   agents' heartbeats go on (idle_cpu_pct_empty_queue, measured the same way
   for 10 s before the flood, once the filler has settled, is what they cost
   alone).

Throughout 2 and 3, a probe client (its own process) allocates 100 milli-GPU
on any GPU and releases it, one pair at a time, and records Allocate latency.

JSON: probe_allocate_p50_ms/_p99_ms with _during and _after suffixes,
idle_cpu_pct (scheduler CPU over step 4, % of one core, from /proc),
idle_cpu_pct_queue (that minus idle_cpu_pct_empty_queue: the queue's own cost),
passes_on_followers (the follower's Admin.GetAllocatorStats.pending_passes at
the end: must be 0), pending_total (state 'pending' in the database).
Targets: probe p99 < 50 ms during and after the flood, idle CPU < 5 %.

Run: python -m bench.pending_flood [--flood 5000] [--pending 20000]
        [--unschedulable 200] [--after-seconds 15] [--idle-seconds 30]
        [--max-seconds 360] [--database-url URL]
Bounded: at most --pending flood calls, in at most --max-seconds; only
127.0.0.1; Ctrl-C or SIGTERM stops the clients and both schedulers.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

import grpc
import psycopg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench.harness import (
    DEFAULT_URL,
    BenchServer,
    loopback_server,
    percentile_ms,
    scheduler_process,
    scratch_database,
    stop_on_sigterm,
)
from bench.support.clients import CALL_TIMEOUT, PLACED, cpu_seconds
from bench.support.fleet import fleet_agents, fleet_nodes
from gpupool.v1 import admin_pb2, admin_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc, types_pb2
from scheduler.security.channels import ClientCredentials, open_channel
from scheduler.store.database import libpq_url

TENANTS = 20  # the flood tenant and 19 others
FILL = (("B200", 125), ("H200", 175))  # whole nodes of 8 in bench.support.fleet.FLEET_MIX
BASELINE_SECONDS = 10.0
# The filler's 300 new desired states and the agents' answers to them cost the
# scheduler for a few seconds: the baseline waits for that to pass.
SETTLE_SECONDS = 15.0
PROBE_PAUSE = 0.05  # between probe pairs: the probe measures, it does not load
SERVE = [sys.executable, "-m", "scheduler.cli.main", "serve"]


def whole(tenant: str, request_id: str, count: int, models: list[str]) -> Any:
    request = scheduler_pb2.AllocateRequest(tenant=tenant, request_id=request_id)
    request.whole.count = count
    request.gpu_models.extend(models)
    return request


def flood_requests(args: argparse.Namespace) -> list[Any]:
    """--pending requests that wait, shuffled: --flood of tenant `flood`
    (8 B200), the rest over 19 tenants (whole H200/B200), --unschedulable
    of them (spread over all 20) never placeable."""
    rng = random.Random(7)
    shapes = ((8, ["H200"]), (8, ["B200"]), (4, ["H200", "B200"]), (8, ["H200", "B200"]))
    out = [whole("flood", f"f-{i}", 8, ["B200"]) for i in range(args.flood)]
    for i in range(args.pending - args.flood):
        count, models = rng.choice(shapes)
        out.append(whole(f"tenant-{1 + i % (TENANTS - 1):02d}", f"p-{i}", count, models))
    for request in rng.sample(out, args.unschedulable):
        del request.gpu_models[:]
        request.gpu_models.append("L4")
        request.whole.count = 8
        request.workload_class = types_pb2.WORKLOAD_CLASS_LATENCY_CRITICAL
    rng.shuffle(out)
    return out


def fill_requests() -> list[Any]:
    return [whole("filler", f"fill-{m}-{i}", 8, [m]) for m, nodes in FILL for i in range(nodes)]


def submit(address: str, credentials: ClientCredentials, requests: list[Any], in_flight: int,
           deadline: float, label: str, console: Console) -> Counter[str]:  # fmt: skip
    """Allocate every request, in_flight at a time, until done or deadline;
    returns outcomes: placed, pending, unschedulable or the error code."""
    outcomes: Counter[str] = Counter()
    slots, lock = threading.BoundedSemaphore(in_flight), threading.Lock()

    def done(call: Any) -> None:
        if call.exception() is not None:
            outcome = call.exception().code().name
        else:
            allocation = call.result().allocation
            outcome = "placed" if allocation.state == PLACED else "pending"
            outcome = "unschedulable" if allocation.unschedulable else outcome
        with lock:
            outcomes[outcome] += 1
        slots.release()

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with closing(open_channel(address, credentials)) as channel, \
            Progress(*columns, console=console, transient=True) as bar:  # fmt: skip
        allocate = scheduler_pb2_grpc.SchedulerStub(channel).Allocate
        task = bar.add_task(label, total=len(requests))
        for request in requests:
            while not slots.acquire(timeout=0.25):
                bar.update(task, completed=sum(outcomes.values()))
            if time.monotonic() > deadline:
                slots.release()
                break
            allocate.future(request, timeout=CALL_TIMEOUT).add_done_callback(done)
        for _ in range(in_flight):  # every call answered
            while not slots.acquire(timeout=0.25):
                bar.update(task, completed=sum(outcomes.values()))
    return outcomes


def probe_main(address: str, credentials: ClientCredentials, stop: Any, results: Any) -> None:
    """Allocate 100 milli-GPU, release it, pause; until stop. Puts a list of
    (end time, Allocate seconds or NaN after an error) on results."""
    samples: list[tuple[float, float]] = []
    with closing(open_channel(address, credentials)) as channel:
        stub = scheduler_pb2_grpc.SchedulerStub(channel)
        n = 0
        while not stop.is_set():
            request = scheduler_pb2.AllocateRequest(tenant="probe", request_id=f"probe-{n}")
            request.fraction.milli_gpu, request.fraction.memory_mib = 100, 1024
            n += 1
            t0 = time.perf_counter()
            try:
                allocation = stub.Allocate(request, timeout=CALL_TIMEOUT).allocation
                samples.append((time.monotonic(), time.perf_counter() - t0))
                release = scheduler_pb2.ReleaseRequest(allocation_id=allocation.id)
                stub.Release(release, timeout=CALL_TIMEOUT)
            except grpc.RpcError:
                samples.append((time.monotonic(), math.nan))
            stop.wait(PROBE_PAUSE)
    results.put(samples)


@contextmanager
def probe(sched: BenchServer) -> Iterator[Any]:
    """The probe in a process of its own (the flood's callbacks would share
    its GIL otherwise); yields a function that stops it and returns samples."""
    ctx = mp.get_context("spawn")
    stop, results = ctx.Event(), ctx.Queue()
    process = ctx.Process(target=probe_main, args=(sched.address, sched.admin, stop, results))
    process.daemon = True
    process.start()

    def finish() -> list[tuple[float, float]]:
        stop.set()
        samples: list[tuple[float, float]] = results.get(timeout=CALL_TIMEOUT * 2 + 30)
        return samples

    try:
        yield finish
    finally:
        stop.set()
        process.join(timeout=CALL_TIMEOUT * 2 + 30)
        if process.is_alive():
            process.terminate()


def allocator_stats(sched: BenchServer) -> Any:
    with closing(open_channel(sched.address, sched.admin)) as channel:
        stub = admin_pb2_grpc.AdminStub(channel)
        return stub.GetAllocatorStats(admin_pb2.GetAllocatorStatsRequest(), timeout=10)


def cpu_pct(pids: list[int], seconds: float, label: str, console: Console) -> list[float]:
    """Each process's CPU over the next `seconds`, in % of one core."""
    before = [cpu_seconds(p) for p in pids]
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=seconds)
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            bar.update(task, completed=seconds - left)
            time.sleep(min(0.25, left))
    return [100 * (cpu_seconds(p) - b) / seconds for p, b in zip(pids, before, strict=True)]


def wait(seconds: float, label: str, console: Console) -> None:
    cpu_pct([], seconds, label, console)


def queue_counts(database_url: str) -> tuple[int, int]:
    """(pending, of which unschedulable) in the database."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE unschedulable) FROM allocations"
            " WHERE state = 'pending'"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def latencies(samples: list[tuple[float, float]], start: float, end: float) -> list[float]:
    return [took for at, took in samples if start <= at < end and not math.isnan(took)]


def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    server = loopback_server(args.database_url)
    nodes = fleet_nodes()
    cap = str(max(args.flood, math.ceil((args.pending - args.flood) / (TENANTS - 1))) + 100)
    command = [*SERVE, "--max-pending-per-tenant", cap]
    deadline = time.monotonic() + args.max_seconds
    with scratch_database(server) as url, scheduler_process(url, console, command) as leader:
        console.print(f"leader pid {leader.pid} on {leader.address}")
        with fleet_agents(leader, nodes, args.unary_heartbeats, console) as beats:
            reg_s = beats.registered_s
            with scheduler_process(url, console, command) as follower:
                console.print(f"follower pid {follower.pid} on {follower.address}")
                filled = submit(leader.address, leader.admin, fill_requests(), 16, deadline,
                                "filling the B200 and H200 nodes", console)  # fmt: skip
                console.print(f"filler: {dict(filled)}")
                wait(SETTLE_SECONDS, "settling after the filler", console)
                baseline = cpu_pct([leader.pid], BASELINE_SECONDS, "idle, empty queue", console)
                with probe(leader) as finish_probe:
                    wait(2.0, "probe warming up", console)
                    flood_start = time.monotonic()
                    load = os.getloadavg()[0]
                    outcomes = submit(leader.address, leader.admin, flood_requests(args),
                                      args.in_flight, deadline, "flood", console)  # fmt: skip
                    flood_end = time.monotonic()
                    console.print(f"flood: {dict(outcomes)} in {flood_end - flood_start:.0f}s")
                    wait(args.after_seconds, "after the flood, queue full", console)
                    samples = finish_probe()
                passes_before = allocator_stats(leader).pending_passes
                idle, follower_idle = cpu_pct([leader.pid, follower.pid], args.idle_seconds,
                                              "idle, queue full", console)  # fmt: skip
                stats = {"leader": allocator_stats(leader), "follower": allocator_stats(follower)}
                pending, unschedulable = queue_counts(url)
        heartbeats = (beats.sent, beats.failed)
    during = latencies(samples, flood_start, flood_end)
    after = latencies(samples, flood_end, flood_end + args.after_seconds)
    summary = {
        "gpus": sum(len(n.gpus) for n in nodes),
        "flood_calls": sum(outcomes.values()),
        "flood_seconds": round(flood_end - flood_start, 1),
        "flood_outcomes": dict(outcomes),
        "pending_total": pending,
        "unschedulable_total": unschedulable,
        "probe_allocate_p50_ms_during": round(percentile_ms(during, 0.50), 2) if during else None,
        "probe_allocate_p99_ms_during": round(percentile_ms(during, 0.99), 2) if during else None,
        "probe_allocate_p50_ms_after": round(percentile_ms(after, 0.50), 2) if after else None,
        "probe_allocate_p99_ms_after": round(percentile_ms(after, 0.99), 2) if after else None,
        "probe_errors": sum(math.isnan(took) for _, took in samples),
        "idle_cpu_pct": round(idle, 1),
        "idle_cpu_pct_empty_queue": round(baseline[0], 1),
        # What the full queue itself costs over the agents' heartbeats (same replica).
        "idle_cpu_pct_queue": round(idle - baseline[0], 1),
        "follower_idle_cpu_pct": round(follower_idle, 1),
        "idle_pending_passes": stats["leader"].pending_passes - passes_before,
        "passes_on_leader": stats["leader"].pending_passes,
        "passes_on_followers": stats["follower"].pending_passes,
        "follower_is_leader": stats["follower"].leader,
        "load_average": round(load, 2),
        "agents": "unary Heartbeat calls" if args.unary_heartbeats else "Connect streams",
    }
    table = Table("metric", "value", title=f"pending flood: {summary['gpus']} GPUs")
    for key, value in summary.items():
        table.add_row(key, str(value))
    table.add_row("probe samples during / after", f"{len(during)} / {len(after)}")
    table.add_row("heartbeats sent / failed", f"{heartbeats[0]} / {heartbeats[1]}")
    table.add_row("fleet registration", f"{reg_s:.1f} s")
    Console().print(table)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=5000, help="calls of the one flood tenant")
    parser.add_argument("--pending", type=int, default=20_000, help="flood calls in all")
    parser.add_argument("--unschedulable", type=int, default=200)
    parser.add_argument("--in-flight", type=int, default=32, help="flood calls at once")
    parser.add_argument("--after-seconds", type=float, default=15.0)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--max-seconds", type=float, default=360.0, help="bound on the flood")
    parser.add_argument(
        "--database-url", default=os.environ.get("GPUPOOL_DATABASE_URL") or DEFAULT_URL
    )
    parser.add_argument(
        "--unary-heartbeats", action="store_true", help="agents as unary calls, not streams"
    )
    args = parser.parse_args()
    if not 0 <= args.unschedulable <= args.pending or not 0 < args.flood <= args.pending:
        parser.error("need 0 < --flood <= --pending and --unschedulable <= --pending")
    stop_on_sigterm()
    console = Console(stderr=True)
    print(json.dumps(run(args, console)), flush=True)


if __name__ == "__main__":
    main()
