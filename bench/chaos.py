"""Chaos run: two scheduler replicas on one PostgreSQL of the run's own, six
simulated agents running real worker processes, 16 clients doing allocate /
release / watch churn, and a fault schedule: kill -9 of the follower, of the
leader, SIGSTOP of one agent for longer than the node timeout plus grace
(then SIGCONT), kill -9 of an agent and of PostgreSQL (started again after
10 s). Every replica and agent killed is started again 2 s later.

Run: python -m bench.chaos [--seconds 120] [--seed 0] [--freeze agent|node]
        [--agent-down SECONDS] [--keep]

Afterwards it checks every client's log against the database and the SQL
invariants over every GPU, and prints per-fault progress and, last, one JSON
line: acknowledged, lost, double_booked, duplicate_request_ids,
unknown_status_count, jobs_running_twice, agent_reconnect_p99_s,
placement_resumed_s (and the details behind each). The baseline is the
fault-free warm-up of the same run (its answers per second and errors).
Everything it started is killed on exit, Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console

from bench.harness import admin_token, stop_on_sigterm
from bench.support.chaos_checks import HELLO_TRIGGER, ClientLogs, pending_count
from bench.support.chaos_clients import ClientConfig, write_config
from bench.support.chaos_cluster import (
    NODE_MARKER,
    NODES,
    WORKER_TEMPLATE,
    Cluster,
    Member,
    Replica,
    Timings,
    marked_processes,
    read_environ,
)
from bench.support.chaos_postgres import KillablePostgres
from bench.support.chaos_report import Fault, RunFacts, is_error, summarise
from bench.support.chaos_watch import WorkerSampler, established_ports, wait_until
from gpupool.v1 import admin_pb2, admin_pb2_grpc
from scheduler.security.channels import ClientCredentials, open_channel

WARMUP_S = 5.0  # fault-free: the baseline
SETTLE_S = 3.0  # sampling goes on after the clients stop
RESTART_AFTER_S = 2.0
DATABASE_DOWN_S = 10.0
PROGRESS_EVERY_S = 10.0
# When each fault starts, as a share of --seconds after the warm-up.
# One after the other (each at least its share after the previous one); the
# freeze lasts node timeout + grace + 3 s under a stable leader, so its work
# must move; in a 30 s run the agent kill falls within it.
# The follower goes first, so the leader holds every agent's stream when it dies.
SCHEDULE = {"follower": 0.05, "leader": 0.15, "freeze": 0.25, "agent": 0.35, "postgres": 0.62}
RECOVERY_S = 8.0  # the clients go on this long after the schedule's span
# Work on the only MIG node cannot move anywhere: a fault there shows nothing.
NOT_A_TARGET = {"a100-mig-0"}


@dataclass
class Run:
    args: argparse.Namespace
    console: Console
    directory: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    faults: list[Fault] = field(default_factory=list)
    started: float = 0.0  # epoch seconds: the fault clock's zero (end of the warm-up)
    pg: KillablePostgres | None = None
    cluster: Cluster | None = None
    clients: subprocess.Popen[bytes] | None = None
    sampler: WorkerSampler | None = None
    admin: ClientCredentials | None = None
    database_back: float = 0.0
    under_fault: set[str] = field(default_factory=set)  # nodes frozen or killed just now
    timeline: list[tuple[float, Callable[[], None]]] = field(default_factory=list)

    def say(self, text: str) -> None:
        offset = time.time() - self.started if self.started else 0.0
        self.console.print(f"[dim]t={offset:6.1f}s[/] {text}", highlight=False)

    # -- setup ----------------------------------------------------------------------

    def start(self) -> None:
        self.pg = KillablePostgres(self.directory)
        self.pg.start()
        self.say(f"PostgreSQL of the run's own on 127.0.0.1:{self.pg.port}")
        timings = Timings()
        cluster = self.cluster = Cluster(self.directory, self.pg.url, self.run_id, timings)
        cluster.add_replicas(2)
        first, second = cluster.replicas
        if not cluster.start_replica(first):  # runs the migrations
            raise SystemExit(f"replica-0 did not come up; see {first.log_path}")
        with psycopg.connect(self.pg.url, autocommit=True) as conn:
            conn.execute(HELLO_TRIGGER)
        if not cluster.start_replica(second):
            raise SystemExit(f"replica-1 did not come up; see {second.log_path}")
        self.admin = admin_token(self.pg.url, cluster.pki.ca.cert_pem)
        self.say(f"replicas: {', '.join(r.address for r in cluster.replicas)} ({timings})")
        cluster.add_agents()
        for agent in cluster.agents.values():
            agent.start()
        if not wait_until(lambda: self.registered() == len(NODES), 60):
            raise SystemExit(f"only {self.registered()} of {len(NODES)} agents registered")
        self.say(f"{len(NODES)} agents connected over {cluster.agent_target}")
        self.sampler = WorkerSampler(
            self.run_id, {n: cluster.agent_state_dir(n) for n in cluster.agents}
        )
        self.sampler.start()
        self.start_clients()

    def registered(self) -> int:
        assert self.pg is not None
        with psycopg.connect(self.pg.url, connect_timeout=5) as conn:
            row = conn.execute("SELECT count(DISTINCT node) FROM chaos_hellos").fetchone()
        return int(row[0]) if row else 0

    def start_clients(self) -> None:
        assert self.cluster is not None and self.admin is not None
        logs = self.directory / "clients"
        logs.mkdir()
        cfg = ClientConfig(
            target=self.cluster.api_target,
            ca_cert=str(self.cluster.pki.directory / "ca.crt"),
            out_dir=str(logs),
            clients=self.args.clients,
            seconds=WARMUP_S + 3 * self.args.seconds + 300,  # a cap: chaos.py says when
            seed=self.args.seed,
            run_id=self.run_id,
            template=WORKER_TEMPLATE,
        )
        config = self.directory / "clients.json"
        write_config(cfg, config)
        env = {**self.cluster.base_env(), "GPUPOOL_CHAOS_TOKEN": self.admin.token or ""}
        with (self.directory / "clients.log").open("ab") as log:
            self.clients = subprocess.Popen(
                [sys.executable, "-m", "bench.support.chaos_clients", str(config)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.say(f"{self.args.clients} clients started (logs in {logs})")

    # -- faults ---------------------------------------------------------------------

    def leader(self) -> tuple[Replica | None, Replica | None]:
        """(leader, follower) by Admin.GetAllocatorStats on each live replica."""
        assert self.cluster is not None and self.admin is not None
        leader = follower = None
        for replica in self.cluster.replicas:
            if replica.pid is None:
                continue
            with open_channel(replica.address, self.admin) as channel:
                stub = admin_pb2_grpc.AdminStub(channel)  # type: ignore[no-untyped-call]
                try:
                    stats = stub.GetAllocatorStats(admin_pb2.GetAllocatorStatsRequest(), timeout=5)
                except Exception:
                    continue
            if stats.leader:
                leader = replica
            else:
                follower = replica
        return leader, follower

    def busiest_agent(self, exclude: set[str]) -> Member:
        """The agent with the most allocations running workers (a fault there matters)."""
        assert self.cluster is not None and self.sampler is not None
        counts = self.sampler.nodes_with_workers()
        nodes = [n for n in NODES if n not in exclude | NOT_A_TARGET]
        return self.cluster.agents[max(nodes, key=lambda n: (counts.get(n, 0), n))]

    def record(self, name: str, target: str, **detail: Any) -> Fault:
        fault = Fault(name, time.time(), target, detail)
        self.faults.append(fault)
        return fault

    def kill_replica(self, replica: Replica, role: str) -> None:
        assert self.cluster is not None and self.pg is not None
        # Its agents need a replica to go to: the one restarted after the last kill.
        for other in self.cluster.replicas:
            if other is not replica and not self.cluster.serving(other, 30):
                self.say(f"[yellow]{other.name} is not serving yet[/]")
        port = int(replica.agent_address.rsplit(":", 1)[1])
        others = {int(r.agent_address.rsplit(":", 1)[1]) for r in self.cluster.replicas} - {port}
        on_it: list[str] = []
        also_elsewhere: list[str] = []
        for node, agent in self.cluster.agents.items():
            ports = established_ports(agent.pid) if agent.pid else set()
            if port in ports:
                (also_elsewhere if ports & others else on_it).append(node)
        pending = _quiet(lambda: _pending(self.pg))
        replica.kill9()
        self.record(
            role,
            replica.name,
            agents_on_it=on_it,
            agents_on_both=also_elsewhere,
            agents_under_fault=sorted(self.under_fault),
            pending_at_kill=pending,
        )
        both = f"; also connected elsewhere: {', '.join(also_elsewhere)}" if also_elsewhere else ""
        self.say(
            f"kill -9 {replica.name} ({role}); its agents: {', '.join(on_it) or 'none'}{both}; "
            f"{pending} pending"
        )
        self.later(RESTART_AFTER_S, lambda: self.restart(replica))

    def restart(self, member: Member) -> None:
        member.start()
        self.say(f"{member.name} started again")

    def later(self, delay: float, action: Callable[[], None]) -> None:
        self.timeline.append((time.time() + delay, action))

    def fault_leader(self) -> None:
        leader, _ = self.leader()
        if leader is None:
            self.say("[yellow]no replica says it leads; killing replica-0[/]")
            assert self.cluster is not None
            leader = self.cluster.replicas[0]
        self.kill_replica(leader, "leader")

    def fault_follower(self) -> None:
        leader, follower = self.leader()
        if follower is None:
            assert self.cluster is not None
            follower = next(r for r in self.cluster.replicas if r is not leader)
        self.kill_replica(follower, "follower")

    def fault_agent(self) -> None:
        agent = self.busiest_agent(exclude=self.under_fault)
        node = agent.name.split()[-1]
        running = self._running_on(node)
        self.under_fault.add(node)
        agent.kill9()
        self.record("agent", agent.name, running=running)
        self.say(f"kill -9 {agent.name} (workers of {len(running)} allocations run there)")
        down = self.args.agent_down
        self.later(down, lambda: self.restart(agent))
        self.later(down + SETTLE_S, lambda: self.under_fault.discard(node))

    def fault_postgres(self) -> None:
        assert self.pg is not None
        self.pg.kill9()
        self.record("postgres", "postgres", down_s=DATABASE_DOWN_S)
        self.say(f"kill -9 PostgreSQL (postmaster and backends); back in {DATABASE_DOWN_S:.0f}s")
        self.later(DATABASE_DOWN_S, self.restart_postgres)

    def restart_postgres(self) -> None:
        assert self.pg is not None
        t0 = time.monotonic()
        self.pg.start()
        self.database_back = time.time()
        self.say(f"PostgreSQL started again (crash recovery took {time.monotonic() - t0:.1f}s)")

    def fault_freeze(self) -> None:
        assert self.cluster is not None
        agent = self.busiest_agent(exclude=self.under_fault)
        node = agent.name.split()[-1]
        self.under_fault.add(node)
        timings = self.cluster.timings
        hold = timings.node_timeout_s + timings.node_grace_s + 3.0
        running = self._running_on(node)
        stopped = self._freeze_pids(agent)
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        self.record("freeze", agent.name, hold_s=hold, running=running, mode=self.args.freeze)
        what = (
            "the agent"
            if self.args.freeze == "agent"
            else f"the agent and {len(stopped) - 1} workers"
        )
        self.say(
            f"SIGSTOP {agent.name}: {what} for {hold:.0f}s (node timeout + grace + 3s); "
            f"workers of {len(running)} allocations run there"
        )

        def thaw() -> None:
            for pid in stopped:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    continue
            self.say(f"SIGCONT {agent.name}")

        self.later(hold, thaw)
        self.later(hold + SETTLE_S, lambda: self.under_fault.discard(node))

    def _freeze_pids(self, agent: Member) -> list[int]:
        assert agent.pid is not None
        if self.args.freeze == "agent":
            return [agent.pid]
        node = agent.name.split()[-1]
        workers = [
            p
            for p in marked_processes(self.run_id)
            if read_environ(p).get(NODE_MARKER) == node and p != agent.pid
        ]
        return [agent.pid, *workers]

    def _running_on(self, node: str) -> list[str]:
        assert self.sampler is not None
        return sorted(a for a, nodes in self.sampler.live.items() if node in nodes)

    # -- the run --------------------------------------------------------------------

    def go(self) -> None:
        time.sleep(WARMUP_S)
        self.started = time.time()
        actions = {
            "freeze": self.fault_freeze,
            "leader": self.fault_leader,
            "follower": self.fault_follower,
            "agent": self.fault_agent,
            "postgres": self.fault_postgres,
        }
        names = list(SCHEDULE)

        def step(i: int) -> Callable[[], None]:
            """Fault i, then fault i+1 its share of --seconds later (never
            earlier, however long this one took: replicas start in seconds)."""

            def run() -> None:
                actions[names[i]]()
                if i + 1 < len(names):
                    gap = (SCHEDULE[names[i + 1]] - SCHEDULE[names[i]]) * self.args.seconds
                    self.later(gap, step(i + 1))

            return run

        self.timeline.append((self.started + SCHEDULE[names[0]] * self.args.seconds, step(0)))
        next_progress = self.started + PROGRESS_EVERY_S
        while self.timeline or time.time() < self.end():
            self.timeline.sort(key=lambda item: item[0])
            now = time.time()
            if self.timeline and self.timeline[0][0] <= now:
                _, action = self.timeline.pop(0)
                action()
                continue
            if now >= next_progress:
                self.progress()
                next_progress += PROGRESS_EVERY_S
            wake = min([self.end(), next_progress, *(t for t, _ in self.timeline[:1])])
            time.sleep(max(0.02, min(0.25, wake - now)))
        (self.directory / "clients" / "stop").touch()
        assert self.clients is not None
        self.clients.wait(timeout=60)
        time.sleep(SETTLE_S)
        assert self.sampler is not None
        self.sampler.stop()

    def end(self) -> float:
        """--seconds after the start, and RECOVERY_S after PostgreSQL is back."""
        seconds = float(self.args.seconds)
        return max(self.started + seconds, self.database_back) + RECOVERY_S

    def progress(self) -> None:
        assert self.sampler is not None
        logs = ClientLogs.read(self.directory / "clients")
        errors = Counter(e["code"] for e in logs.entries if is_error(e))
        self.say(
            f"{sum(1 for e in logs.entries if e['code'] == 'OK')} answers OK, "
            f"errors {dict(errors.most_common(4))}; allocations with live workers: "
            f"{len(self.sampler.live)}; running twice so far: {len(self.sampler.twice)}"
        )

    # -- checks ---------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        assert self.pg is not None and self.sampler is not None
        facts = RunFacts(
            self.args.seconds,
            self.args.seed,
            self.args.freeze,
            self.started,
            WARMUP_S,
            self.pg.port,
            self.faults,
            self.sampler,
        )
        logs = ClientLogs.read(self.directory / "clients")
        with psycopg.connect(self.pg.url) as conn:
            return summarise(conn, facts, logs, self.console)

    def close(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        if self.cluster is not None:
            self.cluster.kill_everything()
        if self.clients is not None and self.clients.poll() is None:
            self.clients.kill()
        for pid in marked_processes(self.run_id):  # anything the cluster did not know of
            try:
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        if self.pg is not None:
            self.pg.kill9()


def _pending(pg: KillablePostgres | None) -> int:
    assert pg is not None
    with psycopg.connect(pg.url, connect_timeout=3) as conn:
        return pending_count(conn)


def _quiet(read: Callable[[], int]) -> int | None:
    try:
        return read()
    except psycopg.Error:
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="the fault schedule's span")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--freeze",
        choices=("agent", "node"),
        default="agent",
        help="SIGSTOP only the agent process (its workers keep running), or the whole "
        "simulated node: the agent and its workers (as a paused VM)",
    )
    parser.add_argument(
        "--agent-down",
        type=float,
        default=RESTART_AFTER_S,
        metavar="SECONDS",
        help="how long the killed agent stays dead (past node timeout + grace, its work moves "
        "while its orphaned workers still run)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run's directory and logs")
    args = parser.parse_args(argv)
    if args.seconds < 30:
        parser.error("--seconds must be at least 30 (PostgreSQL alone is down for 10 s)")
    stop_on_sigterm()
    # Ctrl-C even where the shell that started us ignores SIGINT (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    console = Console(highlight=False)
    directory = Path(tempfile.mkdtemp(prefix="gpupool-chaos-"))
    run = Run(args, console, directory)
    try:
        run.start()
        run.go()
        summary = run.report()
    except KeyboardInterrupt:
        console.print("interrupted: stopping everything this run started")
        raise SystemExit(130) from None
    finally:
        run.close()
        if args.keep:
            console.print(f"run directory kept: {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps(summary, default=str), flush=True)


if __name__ == "__main__":
    main()
