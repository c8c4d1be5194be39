"""The allocator alone: alloc_throughput's churn, in one process, with no gRPC.

Where does Allocate's time go — the allocator (placement, its batch's
statements, PostgreSQL) or the gRPC layer in front of it? This runs the same
request mix as bench.alloc_throughput (bench.support.clients.request_templates,
each client holding 4 allocations and releasing the oldest) from --clients
threads straight into a real replica's Allocator, on a scratch database with
the same 10,000-GPU fleet (bench.support.fleet), written in one transaction.

Run: python -m bench.allocator_alone [--clients 32] [--seconds 20]
        [--packing-policy NAME] [--database-url URL]
JSON (last line): allocations_per_s (with as many releases), allocate_p50_ms,
allocate_p99_ms, cpu_ms_per_allocation (the whole process: allocator and client
threads, from /proc), commands_per_batch, round_trips_per_batch (counted by the
allocator), the allocator thread's wall-time shares (allocator_in_batches_share,
of it allocator_opening_read_share and allocator_closing_write_share, and
allocator_waiting_for_commands_share), load_average. Only 127.0.0.1; bounded by --seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

from rich.console import Console
from rich.progress import Progress
from sqlalchemy import create_engine

from bench.harness import DEFAULT_URL, loopback_server, scratch_database, stop_on_sigterm
from bench.support.clients import HELD_PER_CLIENT, request_templates
from bench.support.fleet import fleet_nodes
from scheduler.allocator.allocator import AllocatorSeconds
from scheduler.api.converters import allocation_spec, gpu_specs
from scheduler.app import SchedulerApp, SchedulerSettings
from scheduler.domain.clock import SystemClock
from scheduler.domain.node_reports import validate_registration
from scheduler.placement.policies import DEFAULT_PACKING_POLICY, POLICY_NAMES
from scheduler.simfleet import register_request
from scheduler.store import fleet as fleet_store
from scheduler.store.database import migrate, normalise_url

WARMUP_SECONDS = 3.0


def seed_fleet(database_url: str) -> int:
    """The bench fleet in one transaction (registration over gRPC takes a minute)."""
    engine = create_engine(normalise_url(database_url))
    now = SystemClock().now()
    nodes = fleet_nodes()
    with engine.begin() as conn:
        for node in nodes:
            request = register_request(node)
            labels = dict(request.labels)
            gpus = validate_registration(request.name, request.hostname, labels, gpu_specs(request))
            fleet_store.register_node(conn, request.name, request.hostname, labels, gpus, now)
    engine.dispose()
    return sum(len(n.gpus) for n in nodes)


class Churn:
    """Client threads: allocate, and once holding 4, release the oldest."""

    def __init__(self, app: SchedulerApp, clients: int) -> None:
        self._app = app
        self._stop = threading.Event()
        self.measuring = False
        self.allocate_s: list[float] = []
        self.pairs = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(i,)) for i in range(clients)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _client(self, index: int) -> None:
        rng = random.Random(index)
        templates = request_templates(rng)
        held: list[str] = []
        for n in range(10**9):
            if self._stop.is_set():
                return
            request = rng.choice(templates)
            request.request_id = f"alone-{index}-{n}"
            spec = allocation_spec(request)
            started = time.perf_counter()
            record = self._app.allocator.allocate(spec)
            took = time.perf_counter() - started
            held.append(record.id)
            released = 0
            if len(held) > HELD_PER_CLIENT:
                self._app.allocator.release(held.pop(0), "bench churn")
                released = 1
            if self.measuring:
                with self._lock:
                    self.allocate_s.append(took)
                    self.pairs += released


def percentile_ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--packing-policy", default=DEFAULT_PACKING_POLICY, choices=POLICY_NAMES)
    parser.add_argument(
        "--database-url", default=os.environ.get("GPUPOOL_DATABASE_URL") or DEFAULT_URL
    )
    args = parser.parse_args()
    stop_on_sigterm()
    console = Console(stderr=True)
    with ExitStack() as stack:
        url = stack.enter_context(scratch_database(loopback_server(args.database_url)))
        migrate(url)
        gpus = seed_fleet(url)
        console.print(f"seeded {gpus:,} GPUs")
        settings = SchedulerSettings(
            database_url=url,
            listen="127.0.0.1:0",
            agent_listen="",
            insecure=True,
            run_loops=False,
            packing_policy=args.packing_policy,
        )
        app = SchedulerApp(settings)
        app.start()
        stack.callback(app.stop, 0.5)
        churn = Churn(app, args.clients)
        churn.start()
        stack.callback(churn.stop)
        time.sleep(WARMUP_SECONDS)
        allocator = app.allocator
        batches0, commands0, trips0 = (
            allocator.batches_committed,
            allocator.commands_committed,
            allocator.round_trips,
        )
        seconds0 = replace(allocator.seconds)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        churn.measuring = True
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"churn, {args.clients} threads", total=args.seconds)
            while (elapsed := time.perf_counter() - wall0) < args.seconds:
                bar.update(task, completed=elapsed)
                time.sleep(0.25)
        churn.measuring = False
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        batches = allocator.batches_committed - batches0
        summary: dict[str, Any] = {
            "gpus": gpus,
            "packing_policy": args.packing_policy,
            "clients": args.clients,
            "allocations_per_s": round(len(churn.allocate_s) / wall, 1),
            "releases_per_s": round(churn.pairs / wall, 1),
            "allocate_p50_ms": percentile_ms(churn.allocate_s, 0.50),
            "allocate_p99_ms": percentile_ms(churn.allocate_s, 0.99),
            "cpu_ms_per_allocation": round(1000 * cpu / max(1, len(churn.allocate_s)), 3),
            "commands_per_batch": round(
                (allocator.commands_committed - commands0) / max(1, batches), 1
            ),
            "round_trips_per_batch": round((allocator.round_trips - trips0) / max(1, batches), 2),
            **thread_shares(seconds0, allocator.seconds, wall),
            "load_average": round(os.getloadavg()[0], 2),
        }
    console.print(summary)
    print(json.dumps(summary), flush=True)


def thread_shares(
    before: AllocatorSeconds, after: AllocatorSeconds, wall: float
) -> dict[str, float]:
    """Shares of the allocator thread's wall time over the window: in batches
    (of which in the opening read and the closing write's round trips) and
    waiting for commands (the rest)."""

    def share(seconds: float) -> float:
        return round(seconds / wall, 3)

    in_batches = after.in_batches - before.in_batches
    return {
        "allocator_in_batches_share": share(in_batches),
        "allocator_opening_read_share": share(after.opening_read - before.opening_read),
        "allocator_closing_write_share": share(after.closing_write - before.closing_write),
        "allocator_waiting_for_commands_share": share(max(0.0, wall - in_batches)),
    }


if __name__ == "__main__":
    main()
