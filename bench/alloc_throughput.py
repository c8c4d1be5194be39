"""Allocate/Release throughput of one scheduler process on a 10,000-GPU
simulated fleet with a long history of released allocations, next to the
same churn on an empty database, the gRPC ceiling of the same clients, and
raw PostgreSQL commit throughput on the same server.

The scheduler runs as users run it: TLS, every call with a bearer token,
audited. One run, three schedulers' worth of work:

1. TLS+token scheduler, fresh database, fleet registered. On it, in order:
   the churn on the empty database (allocations_per_s_empty); --history
   released allocations seeded by set-based SQL (history_rows, seconds in
   history_seed_s); the same churn again, the headline figures
   (allocations_per_s, latencies, round_trips_per_batch, commands_per_batch
   from Admin.GetAllocatorStats read at the window's edges); the gRPC
   ceiling: the same clients, processes and TLS+token channels calling
   grpc.health.v1.Health/Check (grpc_ceiling_calls_per_s); with --batched and
   Scheduler.AllocateMany/ReleaseMany in the generated code, AllocateMany of
   --batch-size then ReleaseMany of them (batched_allocations_per_s, else null).
   Each churn releases what its clients still hold once its window closed.
2. The PostgreSQL baseline on that database once the scheduler stopped.
3. An --insecure scheduler (plaintext, no authentication) on another fresh
   database, the same churn, no history: auth_overhead_ratio =
   allocations_per_s_empty ÷ insecure_allocations_per_s, both on EMPTY
   databases, so it measures authentication alone.

history_ratio = allocations_per_s ÷ allocations_per_s_empty.
ratio_to_grpc_ceiling = allocations_per_s ÷ (grpc_ceiling_calls_per_s / 2):
an allocation costs two calls (Allocate, Release), so 1.0 would mean the
scheduler's own work is free.

Targets: ≥ 1,000 allocations/s, Allocate p99 < 25 ms, history_ratio ≥ 0.9
at 1,000,000 rows, ≤ 3 round trips per batch. (Far from them today.)

With --gpus N (issue 17: N = 100000) the run is another one: the same churn
on a fresh database and scheduler per fleet size, first the 10,000-GPU fleet,
then the same mix scaled to N GPUs, each written straight into the database
before its scheduler starts (bench/support/fleet_scale.py) and with liveness
off (no heartbeats: at 12,500 nodes they would cost more than the churn).
It prints allocations/s at both sizes and gpus_ratio = allocations/s at N ÷
at 10,000 (target ≥ 0.9), plus the first Allocate's seconds (the scheduler's
first snapshot load) and the scheduler's RSS at each size.

Run: python -m bench.alloc_throughput [--clients 32] [--seconds 20]
        [--history 1000000] [--batched] [--batch-size 16]
        [--database-url URL] [--plot latency.png] [--profile spy.svg] [--no-insecure]
     python -m bench.alloc_throughput --gpus 100000 [--clients 32] [--seconds 20]
Uses (and drops) fresh databases gpupool_bench_<random> and `gpupool serve`
on free loopback ports. The last line printed is one JSON summary object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import URL

from bench.harness import (
    DEFAULT_URL,
    BenchServer,
    loopback_server,
    percentile_ms,
    scheduler_process,
    scratch_database,
    stop_on_sigterm,
)
from bench.support.clients import (
    BATCHED_REQUESTS,
    BATCHED_RPCS,
    Job,
    Meter,
    Stats,
    batched_rpcs_available,
    cpu_seconds,
    run_phase,
)
from bench.support.fleet import HEARTBEAT_EVERY, fleet_agents, fleet_nodes
from bench.support.fleet_scale import BASE_GPUS, scaled_nodes, seed_fleet
from bench.support.history import seed_history
from gpupool.v1 import admin_pb2, admin_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc
from scheduler.security.channels import open_channel
from scheduler.store.database import libpq_url

WARMUP_SECONDS = 3.0
PG_SECONDS = 5.0
CEILING_SECONDS = 5.0
BATCHED_SECONDS = 10.0

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


@contextmanager
def scheduler_meter(sched: BenchServer) -> Iterator[Meter]:
    """Reads the scheduler's CPU seconds and Admin.GetAllocatorStats counters
    (NaN where the scheduler does not serve them)."""
    channel = open_channel(sched.address, sched.admin)
    stub = admin_pb2_grpc.AdminStub(channel)

    def read() -> dict[str, float]:
        counters = {"cpu_s": cpu_seconds(sched.pid)}
        names = ("batches", "commands", "round_trips", "pending_passes")
        try:
            stats = stub.GetAllocatorStats(admin_pb2.GetAllocatorStatsRequest(), timeout=10)
            counters |= {name: float(getattr(stats, name)) for name in names}
        except grpc.RpcError:
            counters |= dict.fromkeys(names, math.nan)
        return counters

    try:
        yield read
    finally:
        channel.close()


def batched_served(sched: BenchServer) -> bool:
    """AllocateMany in the generated code and answered (not UNIMPLEMENTED)."""
    if not batched_rpcs_available():
        return False
    with closing(open_channel(sched.address, sched.admin)) as channel:
        stub = scheduler_pb2_grpc.SchedulerStub(channel)
        try:
            allocate_many = getattr(stub, BATCHED_RPCS[0])
            allocate_many(getattr(scheduler_pb2, BATCHED_REQUESTS[0])(), timeout=10)
        except grpc.RpcError as exc:
            return exc.code() != grpc.StatusCode.UNIMPLEMENTED
    return True


@dataclass
class Phase:
    """One measured window: client stats and what the meter's counters did."""

    stats: Stats
    seconds: float
    delta: dict[str, float]
    load: float  # 1-minute load average just before it

    @property
    def rate(self) -> float:
        return self.stats.allocated / self.seconds

    def per_batch(self, counter: str) -> float:
        batches = self.delta.get("batches", math.nan)
        return self.delta.get(counter, math.nan) / batches if batches else math.nan


@dataclass
class Run:
    """Everything one scheduler process was measured doing."""

    registration_s: float
    retries: int
    empty: Phase
    history: Phase | None = None
    history_seed_s: float = 0.0
    ceiling: Phase | None = None
    batched: Phase | None = None
    beats_sent: int = 0
    beats_failed: int = 0
    pg: Phase | None = None


def measure(args: argparse.Namespace, job: Job, seconds: float, label: str, console: Console,
            meter: Meter | None = None) -> Phase:  # fmt: skip
    load = os.getloadavg()[0]  # other work on the machine skews every figure
    stats, delta = run_phase(job, args.clients, args.procs, seconds, WARMUP_SECONDS, label,
                             console, meter)  # fmt: skip
    return Phase(stats, seconds, delta, load)


def scheduler_run(args: argparse.Namespace, server: URL, console: Console, secure: bool) -> Run:
    """A fresh database and scheduler, the fleet registered, then the phases
    (all of them when secure, the empty churn alone when not)."""
    nodes = fleet_nodes()
    with scratch_database(server) as bench_url:
        command = None if not args.no_liveness else [sys.executable, "-c", NO_LIVENESS_SERVER]
        with scheduler_process(bench_url, console, command, secure) as sched:
            console.print(
                f"scheduler pid {sched.pid} on {sched.address} ({sched.admin.describe()})"
            )
            every = math.inf if args.no_liveness else args.heartbeat_every
            with fleet_agents(sched, nodes, not args.stream_agents, console, every) as beats, \
                    scheduler_meter(sched) as meter:  # fmt: skip
                reg_s, retries = beats.registered_s, 0
                churn = Job("churn", sched.address, sched.admin, tag="e")
                how = sched.admin.describe()
                empty = measure(args, churn, args.seconds, f"churn, empty, {how}", console, meter)
                run = Run(reg_s, retries, empty)
                if secure:
                    secure_phases(args, run, sched, bench_url, meter, console)
            run.beats_sent, run.beats_failed = beats.sent, beats.failed
        if secure:  # the scheduler has stopped: the baseline gets the machine to itself
            conninfo = libpq_url(bench_url)
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(SCRATCH_TABLES.format(clients=int(args.clients)).encode())
            pg = Job("pg", conninfo, None)
            run.pg = measure(args, pg, PG_SECONDS, "PostgreSQL baseline", console)
    return run


def secure_phases(args: argparse.Namespace, run: Run, sched: BenchServer, bench_url: str,
                  meter: Meter, console: Console) -> None:  # fmt: skip
    """History, the headline churn, the gRPC ceiling and the batched churn."""
    if args.history:
        gpus = [(n.name, n.gpus[0].model) for n in fleet_nodes()]
        run.history_seed_s = seed_history(bench_url, args.history, gpus, console)
        console.print(f"seeded {args.history:,} released allocations in {run.history_seed_s:.1f}s")
        spy = args.profile and py_spy(sched.pid, args.profile, WARMUP_SECONDS + args.seconds)
        churn = Job("churn", sched.address, sched.admin, tag="h")
        label = f"churn, {args.history:,} rows of history"
        run.history = measure(args, churn, args.seconds, label, console, meter)
        if spy:
            spy.wait(timeout=60)
    ceiling = Job("ceiling", sched.address, sched.admin)
    run.ceiling = measure(args, ceiling, CEILING_SECONDS, "gRPC ceiling: Health/Check", console)
    if not args.batched:
        return
    if not batched_served(sched):
        console.print("Scheduler.AllocateMany is not served: batched_allocations_per_s = null")
        return
    batched = Job("batched", sched.address, sched.admin, tag="b", batch_size=args.batch_size)
    label = f"AllocateMany/ReleaseMany of {args.batch_size}"
    run.batched = measure(args, batched, BATCHED_SECONDS, label, console, meter)


@dataclass
class SizeRun:
    """The churn on one fleet size (--gpus)."""

    gpus: int
    seed_s: float
    first_allocate_s: float  # includes the scheduler's first full snapshot load
    rss_mib: float
    phase: Phase


def size_run(args: argparse.Namespace, server: URL, console: Console, gpus: int) -> SizeRun:
    """A fresh database holding a fleet of `gpus` GPUs, a scheduler on it, the churn."""
    nodes = scaled_nodes(gpus)
    with scratch_database(server) as bench_url:
        seed_s = seed_fleet(bench_url, nodes, console)
        total = sum(len(n.gpus) for n in nodes)
        console.print(f"wrote {len(nodes):,} nodes ({total:,} GPUs) in {seed_s:.1f}s")
        command = [sys.executable, "-c", NO_LIVENESS_SERVER]
        with scheduler_process(bench_url, console, command) as sched, \
                scheduler_meter(sched) as meter:  # fmt: skip
            first_s = first_allocate(sched)
            console.print(f"first Allocate (snapshot load) took {first_s:.1f}s")
            churn = Job("churn", sched.address, sched.admin, tag="g")
            label = f"churn, {total:,} GPUs"
            profile = args.profile and gpus != BASE_GPUS  # --profile: the N-GPU churn
            spy = profile and py_spy(sched.pid, args.profile, WARMUP_SECONDS + args.seconds)
            phase = measure(args, churn, args.seconds, label, console, meter)
            if spy:
                spy.wait(timeout=60)
            rss = rss_mib(sched.pid)
    return SizeRun(total, seed_s, first_s, rss, phase)


def first_allocate(sched: BenchServer) -> float:
    """Seconds for one Allocate and its Release: the first batch loads the fleet."""
    started = time.perf_counter()
    with closing(open_channel(sched.address, sched.admin)) as channel:
        stub = scheduler_pb2_grpc.SchedulerStub(channel)
        request = scheduler_pb2.AllocateRequest(request_id="first", tenant="bench-first")
        request.fraction.milli_gpu, request.fraction.memory_mib = 100, 1024
        answer = stub.Allocate(request, timeout=300)
        stub.Release(scheduler_pb2.ReleaseRequest(allocation_id=answer.allocation.id), timeout=60)
    return time.perf_counter() - started


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            line = next(line for line in fh if line.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration, ValueError):
        return math.nan


def scale_summary(args: argparse.Namespace, base: SizeRun, big: SizeRun) -> dict[str, Any]:
    def figures(run: SizeRun, suffix: str) -> dict[str, Any]:
        stats, phase = run.phase.stats, run.phase
        return {
            f"allocations_per_s{suffix}": round(phase.rate, 1),
            f"allocate_p50_ms{suffix}": _r(percentile_ms(stats.alloc_lat, 0.50), 2),
            f"allocate_p99_ms{suffix}": _r(percentile_ms(stats.alloc_lat, 0.99), 2),
            f"placed_share{suffix}": round(stats.placed / max(1, stats.placed + stats.pending), 4),
            f"errors{suffix}": sum(stats.errors.values()),
            f"scheduler_cpu_ms_per_allocation{suffix}": _r(
                1000 * phase.delta["cpu_s"] / max(1, stats.allocated), 2
            ),
            f"round_trips_per_batch{suffix}": _r(phase.per_batch("round_trips"), 2),
            f"first_allocate_s{suffix}": round(run.first_allocate_s, 2),
            f"rss_mib{suffix}": round(run.rss_mib, 1),
            f"load_average{suffix}": round(phase.load, 2),
        }

    return {
        "gpus": big.gpus,
        "gpus_base": base.gpus,
        "clients": args.clients,
        **figures(big, ""),
        **figures(base, "_10k"),
        "gpus_ratio": _ratio(big.phase.rate, base.phase.rate),
        "seed_s": round(big.seed_s, 1),
    }


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


def _r(value: float, digits: int = 1) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b and not math.isnan(a) and not math.isnan(b) else None


def summarise(args: argparse.Namespace, secure: Run, insecure: Run | None) -> dict[str, Any]:
    headline = secure.history or secure.empty
    churn, empty, pg = headline.stats, secure.empty, secure.pg
    assert pg is not None
    rate, pg_rate = headline.rate, len(pg.stats.alloc_lat) / pg.seconds
    ceiling = len(secure.ceiling.stats.alloc_lat) / secure.ceiling.seconds if secure.ceiling else 0
    insecure_rate = insecure.empty.rate if insecure else math.nan
    answered = churn.placed + churn.pending
    return {
        "gpus": sum(len(n.gpus) for n in fleet_nodes()),
        "clients": args.clients,
        "history_rows": args.history if secure.history else 0,
        "allocations_per_s": round(rate, 1),
        "allocate_p50_ms": _r(percentile_ms(churn.alloc_lat, 0.50), 2),
        "allocate_p99_ms": _r(percentile_ms(churn.alloc_lat, 0.99), 2),
        "release_p50_ms": _r(percentile_ms(churn.release_lat, 0.50), 2),
        "release_p99_ms": _r(percentile_ms(churn.release_lat, 0.99), 2),
        "placed_share": round(churn.placed / answered, 4) if answered else 0.0,
        "allocations_per_s_empty": round(empty.rate, 1),
        "allocate_p99_ms_empty": _r(percentile_ms(empty.stats.alloc_lat, 0.99), 2),
        "history_ratio": _ratio(rate, empty.rate) if secure.history else None,
        "history_seed_s": round(secure.history_seed_s, 1) if secure.history else None,
        "round_trips_per_batch": _r(headline.per_batch("round_trips"), 2),
        "commands_per_batch": _r(headline.per_batch("commands"), 2),
        "scheduler_cpu_ms_per_allocation": _r(
            1000 * headline.delta["cpu_s"] / max(1, churn.allocated), 2
        ),
        "grpc_ceiling_calls_per_s": round(ceiling, 1) if secure.ceiling else None,
        "ratio_to_grpc_ceiling": _ratio(rate, ceiling / 2),
        "batched_allocations_per_s": round(secure.batched.rate, 1) if secure.batched else None,
        "batch_size": args.batch_size if secure.batched else None,
        "pg_tx_per_s": round(pg_rate, 1),
        "ratio_to_pg": _ratio(rate, pg_rate),
        "tls": True,
        "insecure_allocations_per_s": round(insecure_rate, 1) if insecure else None,
        "insecure_allocate_p99_ms": (
            _r(percentile_ms(insecure.empty.stats.alloc_lat, 0.99), 2) if insecure else None
        ),
        "auth_overhead_ratio": _ratio(empty.rate, insecure_rate) if insecure else None,
        "load_average": round(headline.load, 2),
        "agents": "Connect streams" if args.stream_agents else "unary Heartbeat calls",
    }


def print_table(args: argparse.Namespace, secure: Run, summary: dict[str, Any]) -> None:
    headline = secure.history or secure.empty
    churn, cpu = headline.stats, headline.delta["cpu_s"]
    pg = secure.pg
    assert pg is not None
    why = churn.why_pending.most_common(1)
    title = f"gpupool churn: {summary['gpus']} GPUs, {args.clients} clients"
    table = Table("metric", "value", title=title)
    for row in (
        ("client processes", str(args.procs)),
        ("load average before each phase", ", ".join(f"{p.load:.2f}" for p in
         (secure.empty, secure.history, secure.ceiling, secure.batched) if p)
         + f" on {os.cpu_count()} CPUs"),
        ("fleet registration", f"{secure.registration_s:.1f} s, {secure.retries} calls retried"),
        ("heartbeats sent / failed", f"{secure.beats_sent} / {secure.beats_failed}"),
        ("history", f"{summary['history_rows']:,} released rows, seeded in "
                    f"{summary['history_seed_s']} s"),
        ("measured window", f"{args.seconds:.0f} s after {WARMUP_SECONDS:.0f} s warm-up"),
        ("Allocate ok", f"{churn.allocated} ({churn.placed} placed, {churn.pending} pending)"),
        ("Release ok", str(len(churn.release_lat))),
        ("most common pending message", why[0][0] if why else "-"),
        ("errors", ", ".join(f"{k}: {v}" for k, v in churn.errors.items()) or "none"),
        ("scheduler CPU per Allocate+Release", f"{summary['scheduler_cpu_ms_per_allocation']} ms "
                                               f"({cpu / headline.seconds:.0%} of a core)"),
        ("allocations/s with history / empty", f"{summary['allocations_per_s']:,} / "
         f"{summary['allocations_per_s_empty']:,} (ratio {summary['history_ratio']})"),
        ("Allocate p50 / p99", f"{summary['allocate_p50_ms']} / {summary['allocate_p99_ms']} ms"),
        ("Release p50 / p99", f"{summary['release_p50_ms']} / {summary['release_p99_ms']} ms"),
        ("per batch: round trips / commands", f"{summary['round_trips_per_batch']} / "
                                              f"{summary['commands_per_batch']}"),
        ("gRPC ceiling (Health/Check calls/s)", f"{summary['grpc_ceiling_calls_per_s']} "
         f"(allocations/s ÷ half of it: {summary['ratio_to_grpc_ceiling']})"),
        ("batched allocations/s", f"{summary['batched_allocations_per_s']} "
                                  f"(batch of {args.batch_size})"),
        ("PostgreSQL UPDATE+INSERT tx/s", f"{summary['pg_tx_per_s']:,} "
         f"(p50 {percentile_ms(pg.stats.alloc_lat, 0.5):.2f} ms)"),
        ("allocations/s ÷ PostgreSQL tx/s", str(summary["ratio_to_pg"])),
        ("--insecure allocations/s, p99 (empty)", f"{summary['insecure_allocations_per_s']}, "
                                                  f"{summary['insecure_allocate_p99_ms']} ms"),
        ("TLS+tokens+audit ÷ --insecure (empty)", str(summary["auth_overhead_ratio"])),
    ):  # fmt: skip
        table.add_row(*row)
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--procs", type=int, default=0, help="client processes (0: auto)")
    parser.add_argument(
        "--history",
        type=int,
        default=1_000_000,
        metavar="ROWS",
        help="released allocations seeded before the headline churn (0: none)",
    )
    parser.add_argument(
        "--batched",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the AllocateMany/ReleaseMany phase, where the scheduler has it",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--database-url", default=os.environ.get("GPUPOOL_DATABASE_URL") or DEFAULT_URL
    )
    parser.add_argument(
        "--gpus",
        type=int,
        default=0,
        metavar="N",
        help="allocations/s at 10,000 GPUs and at N in one run, and their ratio (gpus_ratio)",
    )
    parser.add_argument("--heartbeat-every", type=float, default=HEARTBEAT_EVERY, metavar="SECONDS")
    parser.add_argument(
        "--no-liveness", action="store_true", help="no heartbeats: the allocate path alone"
    )
    parser.add_argument(
        "--stream-agents",
        action="store_true",
        help="agents on Connect streams, not unary calls (slower here: see README)",
    )
    parser.add_argument("--plot", metavar="FILE.png", help="latency histogram")
    parser.add_argument("--profile", metavar="FILE", help="py-spy record (.svg, else raw)")
    parser.add_argument(
        "--no-insecure", action="store_true", help="skip the --insecure comparison run"
    )  # fmt: skip
    args = parser.parse_args()
    # Two cores are shared with the server and PostgreSQL: few client processes.
    args.procs = args.procs or min(4, max(1, math.ceil(args.clients / 16)))
    stop_on_sigterm()
    console = Console(stderr=True)
    server = loopback_server(args.database_url)
    if args.gpus:
        base = size_run(args, server, console, BASE_GPUS)
        big = size_run(args, server, console, args.gpus)
        summary = scale_summary(args, base, big)
        for key, value in summary.items():
            console.print(f"{key}: {value}")
        print(json.dumps(summary), flush=True)
        return
    secure = scheduler_run(args, server, console, secure=True)
    insecure = None if args.no_insecure else scheduler_run(args, server, console, secure=False)
    summary = summarise(args, secure, insecure)
    print_table(args, secure, summary)
    if args.plot:
        plot(args.plot, (secure.history or secure.empty).stats)
        console.print(f"latency plot written to {args.plot}")
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
