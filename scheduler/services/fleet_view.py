"""The live fleet view behind Admin.WatchFleet (`gpupool top`).

A snapshot (nodes with GPUs, the head of the pending queue, the latest
allocation events) now, then a new one after each change this replica hears
of: an allocation's state (the allocator's commits and other replicas'
NOTIFY), a node or GPU (refreshes of the allocator's snapshot). Changes are
coalesced: at most one snapshot per MIN_INTERVAL_S, so a busy scheduler does
not flood the screen; every KEEPALIVE_S one is sent anyway (heartbeat ages).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import Engine

from scheduler.allocator.notifier import ChangeNotifier
from scheduler.domain.errors import InvalidArgument
from scheduler.store import allocations as allocation_store
from scheduler.store import fleet as fleet_store
from scheduler.store.metrics import pending_summary
from scheduler.store.records import AllocationEvent, AllocationRecord, NodeRecord

MAX_LIMIT = 200
DEFAULT_LIMIT = 20
MIN_INTERVAL_S = 0.25
KEEPALIVE_S = 5.0


@dataclass(frozen=True)
class FleetSnapshotView:
    nodes: list[NodeRecord]
    queue: list[AllocationRecord]
    pending_count: int
    events: list[tuple[str, str, AllocationEvent]]  # (allocation id, tenant, event)


def _limit(value: int, field: str) -> int:
    if value > MAX_LIMIT:
        raise InvalidArgument(f"{field} may be at most {MAX_LIMIT}, got {value}")
    return value or DEFAULT_LIMIT


class FleetView:
    def __init__(self, engine: Engine, notifier: ChangeNotifier) -> None:
        self._engine = engine
        self._notifier = notifier

    def snapshot(self, queue_limit: int, events_limit: int) -> FleetSnapshotView:
        with self._engine.connect() as conn:
            return FleetSnapshotView(
                nodes=fleet_store.list_nodes(conn),
                queue=allocation_store.queue_order(conn, queue_limit),
                pending_count=pending_summary(conn).count,
                events=allocation_store.recent_events(conn, events_limit),
            )

    def watch(
        self, queue_limit: int, events_limit: int, is_active: Callable[[], bool]
    ) -> Iterator[FleetSnapshotView]:
        queue_limit = _limit(queue_limit, "queue_limit")
        events_limit = _limit(events_limit, "events_limit")
        with self._notifier.watching_fleet():
            version = self._notifier.fleet_version()
            yield self.snapshot(queue_limit, events_limit)
            while is_active() and not self._notifier.closed:
                seen = version
                version = self._notifier.wait_fleet(version, KEEPALIVE_S)
                if version != seen:
                    time.sleep(MIN_INTERVAL_S)  # let a burst of changes land first
                    version = self._notifier.fleet_version()
                if self._notifier.closed:
                    return
                yield self.snapshot(queue_limit, events_limit)
