"""What a Prometheus scrape of a scheduler costs, and that history does not
make it grow.

Run: python -m bench.metrics_scrape [--history 1000000] [--pending 2000]
        [--scrapes 50] [--database-url URL]
Uses (and drops) a fresh database gpupool_bench_<random> on a PostgreSQL at
127.0.0.1: the 10,000-GPU benchmark fleet (1,250 nodes) registered straight
into the store, `--pending` allocations waiting with reasons, then the
scheduler's metrics registry collected `--scrapes` times in this process
(the same collector `--metrics-listen` serves) — first with no history (the
baseline, measured in the same run), then after seeding `--history`
released allocations. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime

from prometheus_client import generate_latest
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from bench.harness import DEFAULT_URL, loopback_server, percentile_ms, scratch_database
from bench.support.fleet import fleet_nodes
from bench.support.history import seed_history
from scheduler.domain.clock import SystemClock
from scheduler.domain.node_reports import GpuSpecInput
from scheduler.metrics.state import SchedulerStateCollector, scheduler_registry
from scheduler.store.database import create_db_engine, migrate
from scheduler.store.fleet import register_node

PENDING_SQL = text(
    """
    INSERT INTO allocations (
      id, tenant, request_id, request_hash, kind, gpu_count, milli, memory_mib, mig_profile,
      gpu_models, priority_class, priority, workload_class, model, labels, state,
      pending_reasons, unschedulable, bindings, message, node, nodes,
      created_at, updated_at, event_count, on_failure)
    SELECT 'a-' || substr(md5('pending-' || g), 1, 16), 'tenant-' || (g % 20), 'pending-' || g,
      md5('pending-' || g), 'whole', 8, 1000, 0, '', '["B200"]'::jsonb, 'normal', 50, '', '',
      '{}'::jsonb, 'pending',
      '[{"plugin": "WholeGpusFree", "reason": "not enough idle GPUs", "count": 40},
        {"plugin": "GpuModelAllowed", "reason": "model not allowed", "count": 9000}]'::jsonb,
      false, '[]'::jsonb, 'waiting', '', '{}', now() - make_interval(secs => g), now(),
      1, 'requeue'
    FROM generate_series(1, :n) AS g
    """
)


def scrape_ms(registry: object, scrapes: int) -> tuple[list[float], int]:
    times: list[float] = []
    size = 0
    for _ in range(scrapes):
        started = time.perf_counter()
        size = len(generate_latest(registry))  # type: ignore[arg-type]
        times.append(time.perf_counter() - started)
    return times, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--pending", type=int, default=2_000)
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    args = parser.parse_args()
    console = Console(stderr=True)
    server = loopback_server(args.database_url)
    with scratch_database(server) as url:
        console.print("migrating a scratch database…")
        migrate(url)
        engine = create_db_engine(url)
        nodes = fleet_nodes()
        now = datetime.now(UTC)
        with console.status(f"registering {len(nodes)} nodes…"), engine.begin() as conn:
            for node in nodes:
                specs = [
                    GpuSpecInput(g.uuid, g.index, g.model, g.memory_mib, g.mig_enabled)
                    for g in node.gpus
                ]
                register_node(conn, node.name, node.name, node.labels, specs, now)
            conn.execute(PENDING_SQL, {"n": args.pending})
        collector = SchedulerStateCollector(
            engine, SystemClock(), "bench", lambda: True, lambda: [n.name for n in nodes]
        )
        registry = scheduler_registry(collector)
        scrape_ms(registry, 3)  # warm the connection pool and the plans
        console.print(f"{args.scrapes} scrapes, no history…")
        empty, size = scrape_ms(registry, args.scrapes)
        gpus = [(n.name, g.model) for n in nodes for g in n.gpus]
        seeded = seed_history(url, args.history, gpus, console) if args.history else 0.0
        scrape_ms(registry, 3)
        console.print(f"{args.scrapes} scrapes, {args.history:,} released allocations…")
        full, _ = scrape_ms(registry, args.scrapes)
        engine.dispose()
    summary = {
        "nodes": len(nodes),
        "gpus": len(gpus),
        "pending": args.pending,
        "history_rows": args.history,
        "scrapes": args.scrapes,
        "scrape_bytes": size,
        "empty_p50_ms": round(percentile_ms(empty, 0.5), 2),
        "empty_p99_ms": round(percentile_ms(empty, 0.99), 2),
        "history_p50_ms": round(percentile_ms(full, 0.5), 2),
        "history_p99_ms": round(percentile_ms(full, 0.99), 2),
        "history_ratio": round(percentile_ms(full, 0.5) / max(percentile_ms(empty, 0.5), 1e-9), 2),
        "seed_seconds": round(seeded, 1),
    }
    table = Table(title="metrics scrape (collector + text format)")
    for column in ("history", "p50 ms", "p99 ms"):
        table.add_column(column)
    table.add_row("none (baseline)", str(summary["empty_p50_ms"]), str(summary["empty_p99_ms"]))
    table.add_row(
        f"{args.history:,} released", str(summary["history_p50_ms"]), str(summary["history_p99_ms"])
    )
    console.print(table)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
