"""A Prometheus collector that reads the scheduler's state when scraped.

Nothing is counted on the hot paths for these: a scrape runs a handful of
GROUP BY queries (scheduler/store/metrics.py) in one short read-only
transaction, and asks the replica whether it leads and which agents hold a
stream to it. A failed read yields what it has and counts the failure in
`gpupool_scrape_errors_total`, so a database outage still shows up on the
dashboards instead of a blank scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import SQLAlchemyError

from scheduler.domain.clock import Clock
from scheduler.metrics import instruments
from scheduler.store import metrics as queries

log = logging.getLogger(__name__)


class SchedulerStateCollector(Collector):
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        replica_id: str,
        is_leader: Callable[[], bool],
        connected_agents: Callable[[], Sequence[str]],
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._replica_id = replica_id
        self._is_leader = is_leader
        self._connected_agents = connected_agents
        self._scrape_errors = 0

    def describe(self) -> Iterator[Metric]:
        return iter(())  # unchecked collector: families depend on the data

    def collect(self) -> Iterator[Metric]:
        leader = GaugeMetricFamily(
            "gpupool_leader",
            "1 if this replica leads (runs the pending queue).",
            labels=["replica"],
        )
        leader.add_metric([self._replica_id], 1.0 if self._is_leader() else 0.0)
        yield leader
        yield GaugeMetricFamily(
            "gpupool_connected_agents",
            "Agents holding a stream to this replica.",
            value=len(self._connected_agents()),
        )
        try:
            yield from self._from_database()
        except SQLAlchemyError as exc:
            self._scrape_errors += 1
            log.warning("metrics scrape could not read the database: %s", type(exc).__name__)
        yield CounterMetricFamily(
            "gpupool_scrape_errors",
            "Scrapes whose database read failed (the state metrics were left out).",
            value=self._scrape_errors,
        )

    def _from_database(self) -> Iterator[Metric]:
        with self._engine.connect() as conn:
            counts = queries.allocation_counts(conn)
            pending = queries.pending_summary(conn)
            by_plugin = queries.pending_by_plugin(conn)
            capacity = queries.free_capacity(conn)
            nodes = queries.node_counts(conn)
        allocations = GaugeMetricFamily(
            "gpupool_allocations",
            "Live allocations by state, tenant and kind (whole, fraction, mig).",
            labels=["state", "tenant", "kind"],
        )
        for (state, tenant, kind), n in sorted(counts.items()):
            allocations.add_metric([state, tenant, kind], n)
        yield allocations
        yield GaugeMetricFamily(
            "gpupool_pending_allocations", "Allocations waiting to be placed.", value=pending.count
        )
        age = 0.0
        if pending.oldest is not None:
            now: datetime = self._clock.now()
            oldest = pending.oldest if pending.oldest.tzinfo else pending.oldest.replace(tzinfo=UTC)
            age = max(0.0, (now - oldest).total_seconds())
        yield GaugeMetricFamily(
            "gpupool_pending_oldest_age_seconds",
            "Age of the oldest waiting allocation (0 when none waits).",
            value=age,
        )
        refused = GaugeMetricFamily(
            "gpupool_pending_by_plugin",
            "Waiting allocations per placement plugin among their reasons.",
            labels=["plugin"],
        )
        for plugin, n in sorted(by_plugin.items()):
            refused.add_metric([plugin], n)
        yield refused
        families = {
            "whole_gpus": "Idle whole GPUs (no claim, not in MIG mode)",
            "milli": "Free milli-GPU on GPUs not in MIG mode",
            "memory_mib": "Free memory in MiB on GPUs not in MIG mode",
            "mig_slices": "Free MIG compute slices (of 7 per GPU) on GPUs in MIG mode",
        }
        for field, doc in families.items():
            family = GaugeMetricFamily(
                f"gpupool_free_{field}",
                f"{doc}, by GPU model, on reachable active nodes and healthy GPUs.",
                labels=["gpu_model"],
            )
            for free in capacity:
                family.add_metric([free.model], getattr(free, field))
            yield family
        node_family = GaugeMetricFamily(
            "gpupool_nodes",
            "Registered nodes by state (active, cordoned, draining, unreachable).",
            labels=["state"],
        )
        for state, n in sorted(nodes.items()):
            node_family.add_metric([state], n)
        yield node_family


def scheduler_registry(collector: SchedulerStateCollector) -> CollectorRegistry:
    """One replica's registry: its state collector and the process-wide instruments."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    for instrument in instruments.ALL:
        registry.register(instrument)
    return registry


def watch_database_errors(engine: Engine) -> None:
    """Count every error the driver raises on this engine, by its class."""

    def counted(context: ExceptionContext) -> None:
        error = context.original_exception
        instruments.DATABASE_ERRORS.labels(type(error).__name__).inc()

    event.listen(engine, "handle_error", counted)
