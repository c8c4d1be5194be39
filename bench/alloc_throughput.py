"""Allocate/Release throughput of one scheduler process on a 10,000-GPU
simulated fleet, next to raw PostgreSQL commit throughput on the same server.

The scheduler runs as users run it: TLS, every call with a bearer token,
audited. The same churn against an `--insecure` scheduler (plaintext, no
authentication) in the same run gives auth_overhead_ratio = secure ÷ insecure.

Run: python -m bench.alloc_throughput [--clients 32] [--seconds 20]
        [--database-url URL] [--plot latency.png] [--profile spy.svg] [--no-insecure]
Uses (and drops) fresh databases gpupool_bench_<random> and `gpupool serve`
on free loopback ports. The last line printed is one JSON summary object.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field, fields
from typing import Any

import grpc
import psycopg
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.engine import URL

from bench.harness import (
    DEFAULT_URL,
    loopback_server,
    percentile_ms,
    scheduler_process,
    scratch_database,
)
from gpupool.v1 import agents_pb2, agents_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc, types_pb2
from scheduler.fleetfile import SimulatedNode, parse_fleet
from scheduler.security.channels import ClientCredentials, channel_ready, open_channel
from scheduler.simfleet import register_request
from scheduler.store.database import libpq_url

HELD_PER_CLIENT = 4
WARMUP_SECONDS = 3.0
PG_SECONDS = 5.0
CALL_TIMEOUT = 30.0
PLACED = types_pb2.ALLOCATION_STATE_PLACED
PENDING = types_pb2.ALLOCATION_STATE_PENDING

SCRATCH_TABLES = """
CREATE TABLE bench_counter (id int PRIMARY KEY, n bigint NOT NULL);
CREATE TABLE bench_log (id bigserial PRIMARY KEY, client int, at timestamptz DEFAULT now());
INSERT INTO bench_counter SELECT g, 0 FROM generate_series(0, {clients}) g;
"""
# `gpupool serve` has no flag for the heartbeat timeout: --no-liveness starts
# the same app through its Python settings instead, with liveness effectively off.
NO_LIVENESS_SERVER = """
import argparse, signal, threading
from pathlib import Path
from scheduler.app import SchedulerApp, SchedulerSettings
p = argparse.ArgumentParser()
for flag in ("--listen", "--agent-listen", "--tls-cert", "--tls-key", "--client-ca"):
    p.add_argument(flag)
p.add_argument("--insecure", action="store_true")
a = p.parse_args()
files = {k: Path(v) for k, v in (("tls_cert", a.tls_cert), ("tls_key", a.tls_key),
                                 ("client_ca", a.client_ca)) if v}
app = SchedulerApp(SchedulerSettings(listen=a.listen, agent_listen=a.agent_listen or "",
                                     insecure=a.insecure, heartbeat_timeout_s=1e9, **files))
app.start()
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
stop.wait()
app.stop()
"""
# (node name, model, nodes, of which in MIG mode): 1,250 nodes x 8 = 10,000
# GPUs; 65 of the 650 A100/H100 nodes (10%) run MIG.
FLEET_MIX = (
    ("h100", "H100-80GB", 300, 25),
    ("h200", "H200", 175, 0),
    ("b200", "B200", 125, 0),
    ("a100-80", "A100-80GB", 225, 25),
    ("a100-40", "A100-40GB", 125, 15),
    ("l40s", "L40S", 150, 0),
    ("l4", "L4", 150, 0),
)
# Profiles the MIG nodes above offer (A100-80GB/H100 names, then A100-40GB ones).
MIG_PROFILES = ("1g.10gb", "2g.20gb", "3g.40gb", "1g.20gb", "1g.5gb", "2g.10gb", "3g.20gb")
WORKLOADS = (
    types_pb2.WORKLOAD_CLASS_UNSPECIFIED,
    types_pb2.WORKLOAD_CLASS_LATENCY_CRITICAL,
    types_pb2.WORKLOAD_CLASS_THROUGHPUT,
    types_pb2.WORKLOAD_CLASS_BATCH,
)


def fleet_document() -> dict[str, Any]:
    """The fleet in fleet-file form (see scheduler/fleetfile.py)."""
    nodes: list[dict[str, Any]] = []
    for i, (name, model, count, mig) in enumerate(FLEET_MIX):
        labels = {"zone": f"zone-{'abc'[i % 3]}", "nvlink-domain": "node"}
        for suffix, n, mig_mode in (("", count - mig, False), ("-mig", mig, True)):
            gpus = {"model": model, "count": 8, "mig": mig_mode}
            if n:
                nodes.append({"name": name + suffix, "count": n, "labels": labels, "gpus": gpus})
    return {"nodes": nodes}


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


@dataclass
class Stats:
    alloc_lat: list[float] = field(default_factory=list)  # seconds, measured window only
    release_lat: list[float] = field(default_factory=list)
    placed: int = 0
    pending: int = 0
    ops: int = 0  # every completed call, warm-up included (for the progress bar)
    errors: Counter[str] = field(default_factory=Counter)
    why_pending: Counter[str] = field(default_factory=Counter)


def merge(parts: list[Stats]) -> Stats:
    total = Stats()
    for part in parts:
        for f in fields(Stats):  # lists concatenate, counts and Counters add up
            setattr(total, f.name, getattr(total, f.name) + getattr(part, f.name))
    return total


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


def churn_client(
    address: str, credentials: ClientCredentials, client: int, window: Any, stats: Stats
) -> None:
    """Keep up to HELD_PER_CLIENT allocations: release the oldest, allocate anew."""
    channel = open_channel(address, credentials)
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
        template.request_id = f"c{client}-{n}"  # unique per (tenant, request_id)
        n += 1
        response, took, now = timed(stats, stub.Allocate, template)
        if response is None:
            continue
        held.append(response.allocation.id)
        if start <= now < end:
            stats.alloc_lat.append(took)
            stats.placed += response.allocation.state == PLACED
            if response.allocation.state == PENDING:
                stats.pending += 1
                stats.why_pending[response.allocation.message] += 1
    channel.close()


def pg_client(conninfo: str, _: Any, client: int, window: Any, stats: Stats) -> None:
    """One UPDATE of this client's own row plus one INSERT per transaction."""
    start, end = window[0], window[1]
    with psycopg.connect(conninfo) as conn:
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


@dataclass
class Shared:
    """What the parent and its worker processes share (multiprocessing objects)."""

    ready: Any  # Barrier: every worker is connected
    go: Any  # Event: the window is set, start
    window: Any  # RawArray('d', 2): measured window [start, end) in time.monotonic()
    progress: Any  # RawArray('q', procs): calls done per worker
    results: Any  # Queue: one merged Stats per worker


def worker_main(
    kind: str,
    target: str,
    credentials: ClientCredentials | None,
    clients: list[int],
    index: int,
    sh: Shared,
) -> None:
    """One worker process: a thread per client, reporting progress as it goes."""
    loop: Any = churn_client if kind == "churn" else pg_client
    stats = [Stats() for _ in clients]
    if credentials is not None and not channel_ready(target, credentials, timeout=30):
        raise SystemExit("worker could not reach the scheduler")
    sh.ready.wait(timeout=120)
    sh.go.wait(timeout=120)
    threads = [
        threading.Thread(target=loop, args=(target, credentials, c, sh.window, s), daemon=True)
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


def run_phase(kind: str, target: str, credentials: ClientCredentials | None, clients: int,
              procs: int, seconds: float, warmup: float, console: Console,
              pid: int | None = None) -> tuple[Stats, float]:  # fmt: skip
    """Spawn worker processes (not fork: grpc is already live in this one),
    align their start, show progress; returns merged stats and the CPU seconds
    process `pid` (the scheduler) used inside the measured window."""
    ctx = mp.get_context("spawn")
    procs = max(1, min(procs, clients))
    sh = Shared(ctx.Barrier(procs + 1), ctx.Event(), ctx.RawArray("d", 2),
                ctx.RawArray("q", procs), ctx.Queue())  # fmt: skip
    workers = [
        ctx.Process(
            target=worker_main,
            args=(kind, target, credentials, list(range(i, clients, procs)), i, sh),
        )
        for i in range(procs)
    ]
    for w in workers:
        w.daemon = True
        w.start()
    sh.ready.wait(timeout=120)
    sh.window[0] = time.monotonic() + warmup
    sh.window[1] = sh.window[0] + seconds
    sh.go.set()
    label = "PostgreSQL baseline"
    if credentials is not None:
        label = f"allocate/release churn, {credentials.describe()}"
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[ops]} calls"))  # fmt: skip
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(f"{label} ({clients} clients)", total=warmup + seconds, ops=0)
        cpu_start = math.nan
        while (left := sh.window[1] - time.monotonic()) > 0:
            if math.isnan(cpu_start) and left <= seconds:
                cpu_start = cpu_seconds(pid)
            bar.update(task, completed=warmup + seconds - left, ops=sum(sh.progress))
            time.sleep(min(0.25, left))
        cpu_used = cpu_seconds(pid) - cpu_start
    merged = merge([sh.results.get(timeout=CALL_TIMEOUT + 30) for _ in workers])
    for w in workers:
        w.join(timeout=10)
        if w.is_alive():
            w.terminate()
    return merged, cpu_used


class Heartbeats:
    """Stands in for the agents: the scheduler marks a node unreachable after
    10 s without a heartbeat. One thread, non-blocking calls, each node once
    per period (registering counts as the first beat)."""

    def __init__(self, address: str, credentials: ClientCredentials, every: float) -> None:
        self._channel = open_channel(address, credentials)
        self._beat = agents_pb2_grpc.AgentsStub(self._channel).Heartbeat
        self._due: deque[tuple[float, str]] = deque()  # same period for all: stays sorted
        self.sent = self.failed = 0
        self._every, self._stop = every, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def add(self, node: str) -> None:
        if math.isfinite(self._every):  # inf: heartbeats are off
            self._due.append((time.monotonic() + self._every, node))

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._due:
                self._stop.wait(0.1)
                continue
            due, node = self._due[0]
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            self._due.popleft()
            self._due.append((due + self._every, node))
            call = self._beat.future(agents_pb2.HeartbeatRequest(node=node), timeout=self._every)
            call.add_done_callback(self._done)

    def _done(self, call: Any) -> None:
        self.sent += 1
        self.failed += call.exception() is not None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._channel.close()


def register_fleet(address: str, credentials: ClientCredentials, nodes: list[SimulatedNode],
                   beats: Heartbeats, console: Console) -> tuple[float, int]:  # fmt: skip
    """Register every node over 16 threads; returns seconds taken and retries.
    RegisterNode is level-triggered, so a retry is safe; retries are counted
    because concurrent registration can fail the allocator's snapshot reload."""
    channel = open_channel(address, credentials)
    agents = agents_pb2_grpc.AgentsStub(channel)

    def register(node: SimulatedNode) -> int:
        for attempt in range(6):
            try:
                agents.RegisterNode(register_request(node), timeout=120)
                beats.add(node.name)
                return attempt
            except grpc.RpcError:
                if attempt == 5:
                    raise
                time.sleep(0.05 * (attempt + 1))
        return 0

    started, retries = time.perf_counter(), 0
    pool = ThreadPoolExecutor(16)
    try:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"registering {len(nodes)} nodes", total=len(nodes))
            for attempts in pool.map(register, nodes):
                retries += attempts
                bar.advance(task)
    finally:
        pool.shutdown(cancel_futures=True)
        channel.close()
    return time.perf_counter() - started, retries


def py_spy(pid: int, path: str, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy record of the scheduler: per thread (-t) so the allocator stands out,
    and without pausing it (--nonblocking): blocking sampling halves throughput here."""
    fmt = "flamegraph" if path.endswith(".svg") else "raw"
    command = ["py-spy", "record", "-t", "--nonblocking", "--pid", str(pid), "-f", fmt, "-o", path]
    return subprocess.Popen(
        [*command, "--duration", str(math.ceil(seconds))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def plot(path: str, stats: Stats) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    bins = [10 ** (x / 20) for x in range(-20, 81)]  # 0.1 ms .. 10 s, log-spaced
    for name, values in (("Allocate", stats.alloc_lat), ("Release", stats.release_lat)):
        if values:
            ax.hist([v * 1000 for v in values], bins=bins, alpha=0.55, label=name)
            ax.axvline(percentile_ms(values, 0.99), linestyle="--", linewidth=1, color="black")
    ax.set(xscale="log", xlabel="latency (ms, log scale); dashed: p99", ylabel="calls")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


@dataclass
class Churn:
    """One churn phase against one scheduler process."""

    stats: Stats
    cpu_s: float
    registration_s: float
    retries: int
    beats_sent: int
    beats_failed: int
    load: float

    def rate(self, seconds: float) -> float:
        return len(self.stats.alloc_lat) / seconds


def churn_phase(
    args: argparse.Namespace, server: URL, console: Console, secure: bool, procs: int
) -> tuple[Churn, Stats | None]:
    """A fresh database and scheduler, the fleet registered, then the churn;
    returns the phase and the database URL (kept for the PostgreSQL baseline)."""
    nodes = parse_fleet(fleet_document())
    with scratch_database(server) as bench_url:
        command = None if not args.no_liveness else [sys.executable, "-c", NO_LIVENESS_SERVER]
        with scheduler_process(bench_url, console, command, secure) as sched:
            console.print(
                f"scheduler pid {sched.pid} on {sched.address} ({sched.admin.describe()})"
            )
            every = math.inf if args.no_liveness else args.heartbeat_every
            with closing(Heartbeats(sched.address, sched.admin, every)) as beats:
                reg_s, retries = register_fleet(sched.address, sched.admin, nodes, beats, console)
                console.print(f"registered {len(nodes)} nodes in {reg_s:.1f}s, {retries} retried")
                spy = (
                    secure
                    and args.profile
                    and py_spy(sched.pid, args.profile, WARMUP_SECONDS + args.seconds)
                )
                load = os.getloadavg()[0]  # other work on the machine skews every figure
                stats, cpu = run_phase("churn", sched.address, sched.admin, args.clients,
                                       procs, args.seconds, WARMUP_SECONDS, console,
                                       sched.pid)  # fmt: skip
                if spy:
                    spy.wait(timeout=60)
        if not secure:
            return Churn(stats, cpu, reg_s, retries, beats.sent, beats.failed, load), None
        # The scheduler has stopped: the baseline gets the machine to itself.
        conninfo = libpq_url(bench_url)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(SCRATCH_TABLES.format(clients=int(args.clients)).encode())
        pg, _ = run_phase("pg", conninfo, None, args.clients, procs, PG_SECONDS, 1.0, console)
    return Churn(stats, cpu, reg_s, retries, beats.sent, beats.failed, load), pg


def run(args: argparse.Namespace, server: URL, console: Console) -> tuple[dict[str, Any], Stats]:
    """The whole benchmark; prints the human table, returns the JSON summary."""
    # Two cores are shared with the server and PostgreSQL: few client processes.
    procs = args.procs or min(4, max(1, math.ceil(args.clients / 16)))
    nodes = parse_fleet(fleet_document())
    gpus = sum(len(n.gpus) for n in nodes)
    secure, pg = churn_phase(args, server, console, True, procs)
    insecure = None if args.no_insecure else churn_phase(args, server, console, False, procs)[0]
    assert pg is not None
    pg_rate, pg_p50 = len(pg.alloc_lat) / PG_SECONDS, percentile_ms(pg.alloc_lat, 0.5)
    churn, cpu, every = secure.stats, secure.cpu_s, args.heartbeat_every
    reg_s, retries, load = secure.registration_s, secure.retries, secure.load
    alloc_rate = secure.rate(args.seconds)
    insecure_rate = insecure.rate(args.seconds) if insecure else math.nan
    answered = churn.placed + churn.pending
    summary = {
        "gpus": gpus,
        "clients": args.clients,
        "allocations_per_s": round(alloc_rate, 1),
        "allocate_p50_ms": round(percentile_ms(churn.alloc_lat, 0.50), 2),
        "allocate_p99_ms": round(percentile_ms(churn.alloc_lat, 0.99), 2),
        "release_p50_ms": round(percentile_ms(churn.release_lat, 0.50), 2),
        "release_p99_ms": round(percentile_ms(churn.release_lat, 0.99), 2),
        "placed_share": round(churn.placed / answered, 4) if answered else 0.0,
        "pg_tx_per_s": round(pg_rate, 1),
        "ratio_to_pg": round(alloc_rate / pg_rate, 3) if pg_rate else 0.0,
        "tls": True,
        "insecure_allocations_per_s": round(insecure_rate, 1) if insecure else None,
        "insecure_allocate_p99_ms": (
            round(percentile_ms(insecure.stats.alloc_lat, 0.99), 2) if insecure else None
        ),
        "auth_overhead_ratio": round(alloc_rate / insecure_rate, 3) if insecure else None,
    }
    why = churn.why_pending.most_common(1)
    table = Table("metric", "value", title=f"gpupool churn: {gpus} GPUs, {args.clients} clients")
    for row in (
        ("client processes", str(procs)),
        ("load average before churn", f"{load:.2f} on {os.cpu_count()} CPUs"),
        ("fleet registration", f"{reg_s:.1f} s, {retries} calls retried"),
        ("heartbeats sent / failed", f"{secure.beats_sent} / {secure.beats_failed} "
                                     f"({len(nodes) / every:.0f}/s)"),
        ("measured window", f"{args.seconds:.0f} s after {WARMUP_SECONDS:.0f} s warm-up"),
        ("Allocate ok", f"{len(churn.alloc_lat)} ({churn.placed} placed, {churn.pending} pending)"),
        ("Release ok", str(len(churn.release_lat))),
        ("most common pending message", why[0][0] if why else "-"),
        ("errors", ", ".join(f"{k}: {v}" for k, v in churn.errors.items()) or "none"),
        ("scheduler CPU per Allocate+Release", f"{1000 * cpu / max(1, len(churn.alloc_lat)):.2f} ms"
                                               f" ({cpu / args.seconds:.0%} of a core)"),
        ("allocations/s", f"{alloc_rate:,.0f}"),
        ("Allocate p50 / p99", f"{summary['allocate_p50_ms']} / {summary['allocate_p99_ms']} ms"),
        ("Release p50 / p99", f"{summary['release_p50_ms']} / {summary['release_p99_ms']} ms"),
        ("PostgreSQL UPDATE+INSERT tx/s", f"{pg_rate:,.0f} (p50 {pg_p50:.2f} ms)"),
        ("allocations/s ÷ PostgreSQL tx/s", str(summary["ratio_to_pg"])),
        ("--insecure allocations/s, p99", f"{insecure_rate:,.0f}, "
                                          f"{summary['insecure_allocate_p99_ms']} ms"),
        ("TLS+tokens+audit ÷ --insecure", str(summary["auth_overhead_ratio"])),
    ):  # fmt: skip
        table.add_row(*row)
    Console().print(table)
    return summary, churn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--procs", type=int, default=0, help="client processes (0: auto)")
    parser.add_argument(
        "--database-url", default=os.environ.get("GPUPOOL_DATABASE_URL") or DEFAULT_URL
    )
    # Every heartbeat costs the scheduler ~3 ms of CPU; it declares a node
    # unreachable after 10 s of silence, so 8 s keeps 2 s of margin.
    parser.add_argument("--heartbeat-every", type=float, default=8.0, metavar="SECONDS")
    parser.add_argument(
        "--no-liveness", action="store_true", help="no heartbeats: the allocate path alone"
    )
    parser.add_argument("--plot", metavar="FILE.png", help="latency histogram")
    parser.add_argument("--profile", metavar="FILE", help="py-spy record (.svg, else raw)")
    parser.add_argument(
        "--no-insecure", action="store_true", help="skip the --insecure comparison run"
    )
    args = parser.parse_args()
    console = Console(stderr=True)
    server = loopback_server(args.database_url)
    summary, churn = run(args, server, console)
    if args.plot:
        plot(args.plot, churn)
        console.print(f"latency plot written to {args.plot}")
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
