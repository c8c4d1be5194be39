"""The benchmark fleet at any size, written straight into a scratch database.

Registering 12,500 nodes over gRPC, with heartbeats to keep them reachable,
would cost the scheduler under test more than the churn it is measured on
(and RegisterNode one at a time takes minutes); so the fleet is written
before the scheduler starts: every node through the scheduler's own
validation (validate_registration, as Agents.RegisterNode), then the rows
store.register_node writes for a new node (the node, its GPUs) in two bulk
statements per chunk. The scheduler loads it as it loads any fleet at start.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.console import Console
from rich.progress import Progress
from sqlalchemy import create_engine, insert

from bench.support.fleet import fleet_document
from scheduler.api.converters import gpu_specs
from scheduler.domain.clock import SystemClock
from scheduler.domain.node_reports import validate_registration
from scheduler.fleetfile import SimulatedNode, parse_fleet
from scheduler.simfleet import register_request
from scheduler.store.database import migrate, normalise_url
from scheduler.store.fleet import gpus_t, nodes_t

BASE_GPUS = 10_000  # the size of bench.support.fleet's mix
NODES_PER_STATEMENT = 500


def scaled_nodes(gpus: int) -> list[SimulatedNode]:
    """The benchmark's fleet mix (models, MIG share) at about `gpus` GPUs."""
    document = fleet_document()
    factor = gpus / BASE_GPUS
    for entry in document["nodes"]:
        entry["count"] = max(1, round(entry["count"] * factor))
    return parse_fleet(document)


def seed_fleet(database_url: str, nodes: Sequence[SimulatedNode], console: Console) -> float:
    """Migrate a fresh database and register `nodes` in it; returns the seconds taken."""
    started = time.perf_counter()
    migrate(database_url)
    engine = create_engine(normalise_url(database_url))
    now = SystemClock().now()
    try:
        with Progress(console=console, transient=True) as bar, engine.begin() as conn:
            task = bar.add_task(f"writing {len(nodes):,} nodes", total=len(nodes))
            for first in range(0, len(nodes), NODES_PER_STATEMENT):
                chunk = nodes[first : first + NODES_PER_STATEMENT]
                checked = []
                for node in chunk:
                    request = register_request(node)
                    labels = dict(request.labels)
                    gpus = validate_registration(node.name, node.name, labels, gpu_specs(request))
                    checked.append((node.name, labels, gpus))
                rows = [
                    {"name": name, "hostname": name, "labels": labels, "last_heartbeat_at": now}
                    for name, labels, _ in checked
                ]
                written = conn.execute(
                    insert(nodes_t).returning(nodes_t.c.name, nodes_t.c.id), rows
                )
                ids: dict[str, int] = {name: node_id for name, node_id in written}
                gpu_rows = [
                    {
                        "node_id": ids[name],
                        "uuid": g.uuid,
                        "index": g.index,
                        "model": g.model,
                        "memory_mib": g.memory_mib,
                        "mig_enabled": g.mig_enabled,
                        "nvlink_peers": list(g.nvlink_peers),
                        "pci_bus_id": g.pci_bus_id,
                    }
                    for name, _, gpus in checked
                    for g in gpus
                ]
                conn.execute(insert(gpus_t), gpu_rows)
                bar.advance(task, len(chunk))
    finally:
        engine.dispose()
    return time.perf_counter() - started
