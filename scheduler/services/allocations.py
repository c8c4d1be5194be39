"""Use cases of the Scheduler API: allocate, release, read and watch."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from sqlalchemy import Engine

from scheduler.domain.allocation import AllocationSpec, validate_spec
from scheduler.domain.clock import Clock
from scheduler.domain.errors import FailedPrecondition, InvalidArgument
from scheduler.domain.priorities import PRIORITY_CLASSES
from scheduler.services.allocator import Allocator
from scheduler.services.batch import TERMINAL_STATES
from scheduler.services.notifier import ChangeNotifier
from scheduler.services.workers import WorkerService
from scheduler.store import allocations as store
from scheduler.store.records import AllocationEvent, AllocationRecord

# A watcher re-reads at least this often even without a notification, so a
# lost NOTIFY delays an update but never loses it.
WATCH_POLL_SECONDS = 5.0


class AllocationService:
    def __init__(
        self,
        engine: Engine,
        allocator: Allocator,
        notifier: ChangeNotifier,
        clock: Clock,
        workers: WorkerService | None = None,
    ) -> None:
        self._engine = engine
        self._workers = workers
        self._clock = clock
        self._allocator = allocator
        self._notifier = notifier

    def allocate(self, spec: AllocationSpec) -> AllocationRecord:
        validate_spec(spec)
        if spec.worker is not None:
            if self._workers is None:
                raise InvalidArgument("this scheduler launches no workers (no worker templates)")
            self._workers.validate(spec)
        return self._allocator.allocate(spec)

    def release(self, allocation_id: str) -> AllocationRecord:
        return self._allocator.release(allocation_id)

    def acknowledge_preemption(self, allocation_id: str, checkpoint_uri: str) -> AllocationRecord:
        return self._allocator.revoke(allocation_id, checkpoint_uri, "acknowledged")

    def report_checkpoint(self, allocation_id: str, checkpoint_uri: str) -> AllocationRecord:
        if not checkpoint_uri:
            raise InvalidArgument("checkpoint_uri is required")
        with self._engine.begin() as conn:
            row = store.record_checkpoint(conn, allocation_id, checkpoint_uri, self._clock.now())
            if row is None:
                state = store.get_allocation(conn, allocation_id, with_events=False).state
                raise FailedPrecondition(
                    f"allocation {allocation_id} is {state}: only work holding GPUs checkpoints"
                )
        return AllocationRecord.from_mapping(row)

    def preempt(self, allocation_id: str, grace_s: float) -> AllocationRecord:
        record = self.get(allocation_id)
        if record.state not in ("placed", "running"):
            raise FailedPrecondition(
                f"allocation {allocation_id} is {record.state}: nothing to preempt"
            )
        grace = grace_s or PRIORITY_CLASSES[record.priority_class].grace_s
        self._allocator.preempt([allocation_id], "admin", grace, "preempted by an admin")
        return self.get(allocation_id)

    def queue(self, limit: int) -> list[AllocationRecord]:
        if limit > store.MAX_PAGE_SIZE:
            raise InvalidArgument(f"limit may be at most {store.MAX_PAGE_SIZE}, got {limit}")
        with self._engine.connect() as conn:
            return store.queue_order(conn, limit or store.DEFAULT_PAGE_SIZE)

    def get(self, allocation_id: str) -> AllocationRecord:
        with self._engine.connect() as conn:
            return store.get_allocation(conn, allocation_id)

    def list(
        self, tenant: str, state: str, node: str, page_size: int, page_token: str
    ) -> tuple[list[AllocationRecord], str]:
        with self._engine.connect() as conn:
            return store.list_allocations(conn, tenant, state, node, page_size, page_token)

    def watch(
        self, allocation_id: str, is_active: Callable[[], bool]
    ) -> Iterator[tuple[AllocationRecord, AllocationEvent | None]]:
        """The allocation with its latest event, then one item per later event."""
        with self._notifier.watching(allocation_id):
            version = self._notifier.version(allocation_id)
            record = self.get(allocation_id)
            yield record, (record.events[-1] if record.events else None)
            last_seq = record.event_count
            while record.state not in TERMINAL_STATES and is_active():
                if self._notifier.closed:
                    return
                version = self._notifier.wait(allocation_id, version, WATCH_POLL_SECONDS)
                with self._engine.connect() as conn:
                    events = store.events_since(conn, allocation_id, last_seq)
                    if not events:
                        continue
                    record = store.get_allocation(conn, allocation_id, with_events=False)
                for event in events:
                    yield record, event
                    last_seq = event.seq
