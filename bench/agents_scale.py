"""Agent streams at scale: N simulated node agents on Agents.Connect against
two scheduler replicas on one database, with the replicas' CPU, threads and
memory.

Run: python -m bench.agents_scale [--agents 12500] [--processes 4] [--seconds 60]
        [--interval 10] [--database-url URL] [--plot FILE.png]
Uses (and drops) a fresh database gpupool_bench_<random> and two `gpupool
serve` replicas on free loopback ports. The agents dial both (`ipv4:A,B`,
round robin, as `gpupool agent run` does); one agent per worker process is
pinned to one replica, and its health changes are timed until ListGpus on
the *other* replica shows them. Phases: idle baseline (the replicas' CPU
with no agent), connect (in waves), steady state (CPU and heartbeat writes
measured), then health probes. Ctrl-C or SIGTERM stops everything it started.
The last line printed is one JSON summary object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import random
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.engine import URL

from agent.connection import AGENT_CHANNEL_OPTIONS
from bench.harness import (
    DEFAULT_URL,
    BenchPki,
    BenchServer,
    loopback_server,
    percentile_ms,
    scheduler_process,
    scratch_database,
)
from bench.support.stream_agents import SimAgent, agent_credentials
from gpupool.v1 import admin_pb2, admin_pb2_grpc, agents_pb2, agents_pb2_grpc, types_pb2
from scheduler.fleetfile import parse_fleet
from scheduler.security.channels import ClientCredentials, open_aio_channel, open_channel

CONNECT_TIMEOUT_S = 600.0
PROBE_TIMEOUT_S = 10.0
PROBE_POLL_S = 0.01
UNHEALTHY = types_pb2.GPU_HEALTH_UNHEALTHY
# (name, model, share of nodes, MIG): a mixed fleet of 8-GPU nodes.
FLEET_MIX = (
    ("h100", "H100-80GB", 0.25, False),
    ("h200", "H200", 0.15, False),
    ("b200", "B200", 0.10, False),
    ("a100-80", "A100-80GB", 0.18, False),
    ("a100-40-mig", "A100-40GB", 0.07, True),
    ("l40s", "L40S", 0.13, False),
    ("l4", "L4", 0.12, False),
)


def fleet_document(agents: int) -> dict[str, Any]:
    """`agents` nodes in fleet-file form (scheduler/fleetfile.py); the last
    entry takes the rounding remainder."""
    nodes, left = [], agents
    for i, (name, model, share, mig) in enumerate(FLEET_MIX):
        count = left if i == len(FLEET_MIX) - 1 else min(left, round(agents * share))
        left -= count
        if count:
            gpus = {"model": model, "count": 8, "mig": mig}
            nodes.append({"name": name, "count": count, "labels": {"zone": "abc"[i % 3]},
                          "gpus": gpus})  # fmt: skip
    return {"nodes": nodes}


@dataclass
class Shared:
    """What the parent and its worker processes share (multiprocessing objects)."""

    connected: Any  # RawArray('q', procs): agents that got their first desired state
    beats: Any  # RawArray('q', procs): heartbeats written
    probed: Any  # RawArray('q', procs): 1 once a worker's probes are done
    window: Any  # RawArray('d', 2): steady-state window [start, end) in time.monotonic()
    ready: Any  # RawArray('q', procs): 1 once a worker has built its agents
    go: Any  # Event: every worker is ready, connect now
    stop: Any  # Event: cancel every stream
    results: Any  # Queue: one WorkerResult per worker


@dataclass
class WorkerResult:
    writes: list[float] = field(default_factory=list)  # seconds, steady-state window only
    probes: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


class ProbedAgent(SimAgent):
    """A simulated agent whose stream also carries the prober's messages."""

    extra: asyncio.Queue[tuple[agents_pb2.AgentMessage, asyncio.Future[float]]]
    connected: asyncio.Event


class Worker:
    """One process: an asyncio task per agent, each with its own channel (its
    own TCP connection, like a real host)."""

    def __init__(self, index: int, agents: list[ProbedAgent], endpoints: Endpoints, args: Any,
                 sh: Shared) -> None:  # fmt: skip
        self.index, self.agents, self.endpoints, self.sh = index, agents, endpoints, sh
        self.interval, self.wave, self.probes = args.interval, args.wave, args.probes
        self.result = WorkerResult()

    async def run(self) -> None:
        tasks = []
        for a in self.agents:
            a.extra, a.connected = asyncio.Queue(), asyncio.Event()
        # Connect in waves: every hello registers a node and reloads the
        # allocator's fleet snapshot; a thundering herd would measure only that.
        for start in range(0, len(self.agents), self.wave):
            wave = self.agents[start : start + self.wave]
            tasks += [asyncio.create_task(self.agent(a)) for a in wave]
            waits = [asyncio.create_task(a.connected.wait()) for a in wave]
            _, pending = await asyncio.wait(waits, timeout=CONNECT_TIMEOUT_S)
            for w in pending:
                w.cancel()
        tasks.append(asyncio.create_task(self.prober()))
        while not self.sh.stop.is_set():
            await asyncio.sleep(0.2)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def agent(self, a: ProbedAgent) -> None:
        """Sessions until cancelled; like agent/runner.py, a broken stream is
        retried after a jittered, growing backoff (and counted)."""
        backoff = 0.5
        while True:
            try:
                await self.session(a)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                code = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else repr(exc)
                phase = "steady state" if self.sh.window[1] else "connecting"
                self.result.errors[f"{phase}: stream lost ({code}), reconnected"] += 1
            await asyncio.sleep(random.uniform(0, backoff))
            backoff = min(2 * backoff, 10.0)

    async def session(self, a: ProbedAgent) -> None:
        """Hello, then a heartbeat every interval (and probe messages)."""
        # The real agent's options (round robin, keepalive), and connections of its own.
        options = [*AGENT_CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
        async with open_aio_channel(a.target, a.credentials, options) as channel:
            call: Any = agents_pb2_grpc.AgentsStub(channel).Connect()  # type: ignore[call-arg]
            reader = asyncio.create_task(self.read(call, a))
            loop = asyncio.get_running_loop()
            try:
                await call.write(a.hello)
                next_beat = loop.time() + random.uniform(0, self.interval)  # spread the beats
                while not reader.done():
                    try:
                        timeout = max(0.0, next_beat - loop.time())
                        message, sent = await asyncio.wait_for(a.extra.get(), timeout)
                        a.beat = message  # sticky: later beats report the same health
                    except TimeoutError:
                        message, sent = a.beat, None
                        next_beat += self.interval
                    t0 = time.perf_counter()
                    if sent is not None and not sent.done():  # done: the prober gave up
                        sent.set_result(t0)
                    await call.write(message)
                    self.sh.beats[self.index] += 1
                    if self.sh.window[0] <= time.monotonic() < self.sh.window[1]:
                        self.result.writes.append(time.perf_counter() - t0)
            except Exception:
                await asyncio.wait({reader}, timeout=1.0)  # a failed write: why did it end?
                if not reader.done():
                    raise
            finally:
                reader.cancel()  # a no-op when it has ended
                call.cancel()
            await reader  # the read side's error says why the stream ended
            raise ConnectionError("the scheduler ended the stream")

    async def read(self, call: Any, a: ProbedAgent) -> None:
        async for message in call:
            if message.WhichOneof("body") == "desired" and not a.connected.is_set():
                a.connected.set()
                self.sh.connected[self.index] += 1

    async def prober(self) -> None:
        """After the window (a health change reloads the allocator's snapshot,
        which would skew the CPU figure): the process's first agent, which
        streams to one replica only, reports one GPU unhealthy from its next
        heartbeat on; poll Admin.ListGpus on the other replica until that
        shows, then the same for healthy again."""
        while not self.sh.window[1] or time.monotonic() < self.sh.window[1]:
            await asyncio.sleep(0.1)
        other = self.endpoints.api[1 - pinned_replica(self.index, len(self.endpoints.api))]
        async with open_aio_channel(other, self.endpoints.admin) as channel:
            admin = admin_pb2_grpc.AdminStub(channel)
            a = self.agents[0]
            for _ in range(self.probes):
                await asyncio.sleep(random.uniform(0.1, 0.5))
                gpu = random.randrange(len(a.beat.heartbeat.health))
                sick = agents_pb2.AgentMessage()
                sick.CopyFrom(a.beat)
                sick.heartbeat.health[gpu].health = UNHEALTHY
                sick.heartbeat.health[gpu].reasons.append("bench probe: Xid 79")
                for message in (sick, a.beat):
                    want = message.heartbeat.health[gpu].health
                    sent: asyncio.Future[float] = asyncio.get_running_loop().create_future()
                    await a.extra.put((message, sent))
                    try:  # the agent's own loop writes it, between its heartbeats
                        t0 = await asyncio.wait_for(sent, PROBE_TIMEOUT_S)
                    except TimeoutError:
                        self.result.errors["probe not sent"] += 1
                        continue
                    while time.perf_counter() - t0 < PROBE_TIMEOUT_S:
                        request = admin_pb2.ListGpusRequest(node=a.name)
                        reply = await admin.ListGpus(request, timeout=PROBE_TIMEOUT_S)
                        if reply.gpus[gpu].health == want:  # ordered by index
                            self.result.probes.append(time.perf_counter() - t0)
                            break
                        await asyncio.sleep(PROBE_POLL_S)
                    else:
                        self.result.errors["probe timed out"] += 1
        self.sh.probed[self.index] = 1


def pinned_replica(worker: int, replicas: int) -> int:
    """The replica a worker process's probing agent streams to."""
    return worker % replicas


@dataclass(frozen=True)
class Endpoints:
    """Where the worker processes dial, and as whom (picklable)."""

    api: tuple[str, ...]  # each replica's API port
    agents: tuple[str, ...]  # each replica's agent port
    admin: ClientCredentials
    pki_dir: str

    @classmethod
    def of(cls, servers: list[BenchServer], pki: BenchPki) -> Endpoints:
        api = tuple(s.address for s in servers)
        return cls(api, tuple(s.agent_address for s in servers), servers[0].admin,
                   str(pki.directory))  # fmt: skip

    @property
    def every_replica(self) -> str:
        """One gRPC target for all replicas, as `gpupool agent run --scheduler A,B` makes."""
        return "ipv4:" + ",".join(self.agents)

    def agent_credentials(self) -> Callable[[str], ClientCredentials]:
        # Every replica's certificate names 127.0.0.1 (agent/connection.server_name).
        return agent_credentials(self.pki_dir)


def worker_main(index: int, endpoints: Endpoints, args: Any, sh: Shared) -> None:
    # A Ctrl-C at the terminal reaches every process of the group: the parent
    # stops this one through sh.stop (or terminates it), it must not die half-way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    nodes = parse_fleet(fleet_document(args.agents))[index :: args.processes]
    credentials = endpoints.agent_credentials()
    pinned = endpoints.agents[pinned_replica(index, len(endpoints.agents))]
    with tempfile.TemporaryDirectory() as state_dir:  # the agents write nothing there
        (Path(state_dir) / "templates.yaml").write_text("")
        agents = [
            ProbedAgent(n, pinned if i == 0 else endpoints.every_replica, credentials(n.name),
                     Path(state_dir))
            for i, n in enumerate(nodes)
        ]  # fmt: skip
    worker = Worker(index, agents, endpoints, args, sh)
    sh.ready[index] = 1  # the clock for connect_s starts once every worker is here
    while not sh.go.is_set() and not sh.stop.is_set():
        sh.go.wait(0.2)
    asyncio.run(worker.run())
    sh.results.put(worker.result)


def proc_stats(pid: int) -> tuple[float, int, float]:
    """CPU seconds (user+system), threads and RSS (MiB) of a process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rpartition(")")[2].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        with open(f"/proc/{pid}/status") as fh:
            status = dict(line.split(":", 1) for line in fh if ":" in line)
        return cpu, int(status["Threads"]), int(status["VmRSS"].split()[0]) / 1024
    except (OSError, ValueError, IndexError, KeyError):
        return math.nan, 0, math.nan


def log_errors(text: str) -> str:
    """The scheduler log's ERROR lines, and its most common exception."""
    errors = sum(" ERROR " in line for line in text.splitlines())
    found = re.findall(r"^(\w+(?:Error|Exception)\b.*)$", text, re.MULTILINE)
    kinds = Counter(re.sub(r"\d+", "N", k) for k in found)  # KeyError: 19 -> KeyError: N
    top = f"; most often {kinds.most_common(1)[0][0][:60]!r}" if kinds else ""
    return f"{errors} ERROR lines{top}"


def node_states(address: str, credentials: ClientCredentials) -> str:
    try:
        with open_channel(address, credentials) as channel:
            request = admin_pb2.ListNodesRequest()
            nodes = admin_pb2_grpc.AdminStub(channel).ListNodes(request, timeout=60).nodes
    except grpc.RpcError as exc:  # the figures stand without it
        return f"ListNodes failed: {exc.code().name}: {exc.details()}"
    states = Counter(types_pb2.NodeState.Name(n.state).removeprefix("NODE_STATE_") for n in nodes)
    return ", ".join(f"{k}: {v}" for k, v in states.items())


def cpu_seconds(pids: list[int]) -> float:
    return sum(proc_stats(pid)[0] for pid in pids)


def stop_workers(workers: list[Any], sh: Shared) -> None:
    """Ask, then terminate, then kill: nothing this run started outlives it."""
    sh.stop.set()
    deadline = time.monotonic() + 10
    for w in workers:
        w.join(timeout=max(0.1, deadline - time.monotonic()))
    for w in workers:
        if w.is_alive():
            w.terminate()
    for w in workers:
        w.join(timeout=3)
        if w.is_alive():
            w.kill()
            w.join(timeout=3)


def run(
    args: argparse.Namespace, server: URL, console: Console
) -> tuple[dict[str, Any], WorkerResult]:
    ctx = mp.get_context("spawn")  # not fork: grpc must not be live across a fork
    procs, total = args.processes, WorkerResult()
    c = [ctx.RawArray("q", procs) for _ in range(4)]  # connected, beats, probed, ready
    sh = Shared(c[0], c[1], c[2], ctx.RawArray("d", 2), c[3], ctx.Event(), ctx.Event(),
                ctx.Queue())  # fmt: skip
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[info]}"))  # fmt: skip
    serve = [sys.executable, "-m", "scheduler.cli.main", "serve",
             "--heartbeat-interval", str(args.interval)]  # fmt: skip
    workers: list[Any] = []
    with (
        tempfile.TemporaryDirectory(prefix="gpupool-bench-pki-") as pki_dir,
        scratch_database(server) as db_url,
        contextlib.ExitStack() as stack,
    ):
        pki = BenchPki.create(Path(pki_dir))
        replicas = [
            stack.enter_context(scheduler_process(db_url, console, serve, pki=pki))
            for _ in range(args.replicas)
        ]
        pids = [r.pid for r in replicas]
        for r in replicas:
            console.print(f"replica pid {r.pid}: API {r.address}, agents {r.agent_address}")
        endpoints = Endpoints.of(replicas, pki)
        try:
            # Baseline: the replicas with no agent (leader lease, loops, health).
            idle0 = cpu_seconds(pids)
            time.sleep(args.idle_seconds)
            idle_pct = 100 * (cpu_seconds(pids) - idle0) / args.idle_seconds
            workers = [ctx.Process(target=worker_main, args=(i, endpoints, args, sh), daemon=True)
                       for i in range(procs)]  # fmt: skip
            for w in workers:
                w.start()
            with console.status("workers building their agents' messages…"):
                while sum(sh.ready) < procs:
                    if not all(w.is_alive() for w in workers):
                        raise SystemExit("a worker process died before connecting")
                    time.sleep(0.2)
            sh.go.set()
            with Progress(*columns, console=console, transient=True) as bar:
                task = bar.add_task(f"connecting {args.agents} agents", total=args.agents, info="")
                started = time.monotonic()
                while (connected := sum(sh.connected)) < args.agents:
                    if time.monotonic() - started > CONNECT_TIMEOUT_S:
                        console.print(f"only {connected}/{args.agents} agents connected")
                        break
                    info = "threads " + " / ".join(str(proc_stats(p)[1]) for p in pids)
                    bar.update(task, completed=connected, info=info)
                    time.sleep(0.25)
                connect_s = time.monotonic() - started
                agents_connected = sum(sh.connected)
                # Two intervals of warm-up spread the beats and let connect-time work settle.
                warmup = 2 * args.interval
                sh.window[0] = time.monotonic() + warmup
                sh.window[1] = sh.window[0] + args.seconds
                task = bar.add_task("steady state", total=warmup + args.seconds, info="")
                cpu0, beats0 = math.nan, 0
                max_threads, max_rss = [0] * len(pids), [0.0] * len(pids)
                while (left := sh.window[1] - time.monotonic()) > 0:
                    stats = [proc_stats(p) for p in pids]
                    if math.isnan(cpu0) and left <= args.seconds:
                        cpu0, beats0 = sum(st[0] for st in stats), sum(sh.beats)
                    for i, (_, threads, rss) in enumerate(stats):
                        max_threads[i] = max(max_threads[i], threads)
                        max_rss[i] = max(max_rss[i], rss)
                    info = f"{sum(sh.beats)} heartbeats, threads {max_threads}"
                    bar.update(task, completed=warmup + args.seconds - left, info=info)
                    time.sleep(min(0.25, left))
                cpu_used, beats = cpu_seconds(pids) - cpu0, sum(sh.beats) - beats0
                console.print(
                    f"steady state: {agents_connected} connected in {connect_s:.1f} s, "
                    f"replicas' CPU {100 * cpu_used / args.seconds:.1f} % of one core, "
                    f"threads {max_threads}, RSS {[round(m) for m in max_rss]} MiB"
                )
                bar.add_task(f"health probes ({args.probes} per process)", total=None, info="")
                deadline = time.monotonic() + args.probes * 4 * PROBE_TIMEOUT_S
                while sum(sh.probed) < procs and time.monotonic() < deadline:
                    time.sleep(0.25)
            states = node_states(replicas[0].address, replicas[0].admin)
            failures = []
            for r in replicas:
                r.log.seek(0)
                failures.append(log_errors(r.log.read().decode(errors="replace")))
            sh.stop.set()
            for _ in workers:
                part = sh.results.get(timeout=60)
                for f in fields(WorkerResult):  # lists concatenate, Counters add up
                    setattr(total, f.name, getattr(total, f.name) + getattr(part, f.name))
        finally:
            stop_workers(workers, sh)

    cpu_pct = 100 * cpu_used / args.seconds
    summary = {
        "agents": args.agents,
        "replicas": args.replicas,
        "agents_connected": agents_connected,
        "connect_s": round(connect_s, 1),
        "scheduler_cpu_pct": round(cpu_pct, 1),
        "idle_cpu_pct": round(idle_pct, 1),
        "heartbeat_write_p99_ms": round(percentile_ms(total.writes, 0.99), 2),
        "health_visible_p99_ms": round(percentile_ms(total.probes, 0.99), 2),
        "rss_mib_per_replica": round(max(max_rss), 1),
        "threads_per_replica": max(max_threads),
    }
    table = Table("metric", "value", title=f"gpupool agent streams: {args.agents} agents")
    for row in (
        ("agents / GPUs / worker processes", f"{args.agents} / {8 * args.agents} / {procs}"),
        ("replicas (one database)", f"{args.replicas}, agents dial all (round robin)"),
        (f"connected (waves of {args.wave} per process)",
         f"{agents_connected} in {connect_s:.1f} s"),
        ("steady-state window", f"{args.seconds:.0f} s after {warmup:.0f} s warm-up"),
        ("heartbeats in window", f"{beats} ({beats / args.seconds:.0f}/s, every "
                                 f"{args.interval:g} s per agent)"),
        ("heartbeat stream write p50 / p99", f"{percentile_ms(total.writes, 0.5):.2f} / "
                                             f"{summary['heartbeat_write_p99_ms']} ms"),
        ("replicas' CPU in window (all)", f"{cpu_pct:.1f} % of one core "
                                          f"({1000 * cpu_used / max(1, beats):.2f} ms ÷ beats)"),
        ("baseline: replicas' CPU, no agents", f"{idle_pct:.1f} % of one core"),
        ("threads / RSS per replica", " ; ".join(
            f"{t} / {m:.0f} MiB" for t, m in zip(max_threads, max_rss, strict=True))),
        ("health visible on the other replica p50 / p99",
         f"{percentile_ms(total.probes, 0.5):.1f} / {summary['health_visible_p99_ms']} ms "
         f"({len(total.probes)} changes, after the window)"),
        ("node states at the end", states),
        ("replica logs", " ; ".join(failures)),
        ("agent-side errors", ", ".join(f"{k}: {v}" for k, v in total.errors.items()) or "none"),
        ("load average (1 min)", f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"),
    ):  # fmt: skip
        table.add_row(*row)
    Console().print(table)
    return summary, total


def plot(path: str, result: WorkerResult) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    bins = [10 ** (x / 20) for x in range(-40, 81)]  # 0.01 ms .. 10 s, log-spaced
    for name, values in (("heartbeat write", result.writes), ("health propagation", result.probes)):
        if values:
            share = [1 / len(values)] * len(values)  # each series sums to 1: comparable heights
            ax.hist([v * 1000 for v in values], bins=bins, weights=share, alpha=0.55, label=name)
            ax.axvline(percentile_ms(values, 0.99), linestyle="--", linewidth=1, color="black")
    ax.set(xscale="log", xlabel="latency (ms, log scale); dashed: p99", ylabel="share of samples")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _stop_once(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C or SIGTERM: unwind once (streams, workers, replicas and database
    go in the finally blocks); further signals must not cut that short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=12_500)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--processes", type=int, default=4, help="agent worker processes")
    parser.add_argument("--seconds", type=float, default=60.0, help="steady-state window")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="baseline window")
    parser.add_argument("--interval", type=float, default=10.0, help="heartbeat period (s)")
    parser.add_argument("--wave", type=int, default=25, help="agents connecting at once/process")
    parser.add_argument("--probes", type=int, default=10, help="health probes per process")
    parser.add_argument(
        "--database-url", default=os.environ.get("GPUPOOL_DATABASE_URL") or DEFAULT_URL
    )
    parser.add_argument("--plot", metavar="FILE.png", help="latency histogram")
    args = parser.parse_args()
    args.processes = max(1, min(args.processes, args.agents))
    signal.signal(signal.SIGINT, _stop_once)
    signal.signal(signal.SIGTERM, _stop_once)
    console = Console(stderr=True)
    server = loopback_server(args.database_url)
    try:
        summary, result = run(args, server, console)
    except KeyboardInterrupt:
        console.print("stopped: workers, replicas and the scratch database are gone")
        sys.exit(130)
    if args.plot:
        plot(args.plot, result)
        console.print(f"latency plot written to {args.plot}")
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
