"""Use cases of the Scheduler API: allocate, release, read and watch.

Each takes the Caller: a service acts only on its own tenant's allocations
(and only with the priority classes its tenant was granted), an agent only
on allocations placed on its node; history names who did what."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

from sqlalchemy import Engine

from scheduler.allocator.allocator import Allocator, AllocatorStats
from scheduler.allocator.batch import TERMINAL_STATES
from scheduler.allocator.notifier import ChangeNotifier
from scheduler.domain.allocation import AllocationSpec, validate_spec
from scheduler.domain.callers import (
    Caller,
    Role,
    require_on_node,
    require_priority_class,
    require_tenant,
    tenant_scope,
)
from scheduler.domain.clock import Clock
from scheduler.domain.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from scheduler.domain.priorities import PRIORITY_CLASSES
from scheduler.services.grants import PriorityGrants
from scheduler.services.workers import WorkerService
from scheduler.store import allocations as store
from scheduler.store.records import AllocationEvent, AllocationRecord

# A watcher re-reads at least this often even without a notification, so a
# lost NOTIFY delays an update but never loses it.
WATCH_POLL_SECONDS = 5.0
# Items of one AllocateMany or ReleaseMany; more fail the whole call.
MAX_BATCH_ITEMS = 1000

Outcome = AllocationRecord | BaseException


class AllocationService:
    def __init__(
        self,
        engine: Engine,
        allocator: Allocator,
        notifier: ChangeNotifier,
        clock: Clock,
        grants: PriorityGrants,
        workers: WorkerService | None = None,
    ) -> None:
        self._engine = engine
        self.grants = grants
        self._workers = workers
        self._clock = clock
        self._allocator = allocator
        self._notifier = notifier

    def allocate(
        self, caller: Caller, spec: AllocationSpec, deadline: float | None = None
    ) -> AllocationRecord:
        """deadline: time.monotonic() past which the caller no longer waits."""
        return self._allocator.allocate(self._checked_spec(caller, spec), deadline)

    def allocate_many(
        self,
        caller: Caller,
        specs: Sequence[AllocationSpec | BaseException],
        deadline: float | None = None,
    ) -> list[Outcome]:
        """Each spec's record, or the error of that spec alone, in order: the
        checks of `allocate` apply to each; the ones that pass share batches.
        An item already refused (by the wire converter) keeps its error."""
        _require_batch_size(len(specs), "requests")
        outcomes: list[Outcome | None] = []
        checked: list[AllocationSpec] = []
        for spec in specs:
            if isinstance(spec, BaseException):
                outcomes.append(spec)
                continue
            try:
                checked.append(self._checked_spec(caller, spec))
                outcomes.append(None)
            except Exception as exc:
                outcomes.append(exc)
        return _merged(outcomes, self._allocator.allocate_many(checked, deadline))

    def _checked_spec(self, caller: Caller, spec: AllocationSpec) -> AllocationSpec:
        """The spec as the allocator takes it (a service's tenant filled in),
        if this caller may ask for it."""
        scope = tenant_scope(caller)
        if scope is not None:
            if not spec.tenant:
                spec = replace(spec, tenant=scope)
            require_tenant(caller, spec.tenant, "the request")
        validate_spec(spec)
        if scope is not None:
            require_priority_class(caller, spec.priority_class, self.grants.granted(scope))
        if spec.worker is not None:
            if self._workers is None:
                raise InvalidArgument("this scheduler launches no workers (no worker templates)")
            self._workers.validate(spec)
        return spec

    def release(
        self, caller: Caller, allocation_id: str, deadline: float | None = None
    ) -> AllocationRecord:
        _require_may_release(caller)
        return self._allocator.release(
            allocation_id,
            f"released by {caller.describe()}",
            tenant=tenant_scope(caller),
            deadline=deadline,
        )

    def release_many(
        self, caller: Caller, allocation_ids: Sequence[str], deadline: float | None = None
    ) -> list[Outcome]:
        """Each allocation's record, or the error of that release alone, in order."""
        _require_batch_size(len(allocation_ids), "allocation_ids")
        if caller.role is Role.AGENT:
            return [_agent_may_not_release() for _ in allocation_ids]
        outcomes: list[Outcome | None] = [
            None if i else InvalidArgument("allocation_id is required") for i in allocation_ids
        ]
        released = self._allocator.release_many(
            [i for i in allocation_ids if i],
            f"released by {caller.describe()}",
            tenant=tenant_scope(caller),
            deadline=deadline,
        )
        return _merged(outcomes, released)

    def _check_access(self, caller: Caller, allocation_id: str) -> AllocationRecord:
        """The allocation, if this caller may act on it (tenant, or node for an agent)."""
        record = self.get(caller, allocation_id, check=False)
        what = f"allocation {allocation_id}"
        if caller.node:
            require_on_node(caller, record.nodes or [record.node], what)
        else:
            require_tenant(caller, record.tenant, what)
        return record

    def acknowledge_preemption(
        self, caller: Caller, allocation_id: str, checkpoint_uri: str
    ) -> AllocationRecord:
        self._check_access(caller, allocation_id)
        return self._allocator.revoke(
            allocation_id, checkpoint_uri, "acknowledged", by=caller.describe()
        )

    def report_checkpoint(
        self, caller: Caller, allocation_id: str, checkpoint_uri: str
    ) -> AllocationRecord:
        if not checkpoint_uri:
            raise InvalidArgument("checkpoint_uri is required")
        self._check_access(caller, allocation_id)
        with self._engine.begin() as conn:
            row = store.record_checkpoint(conn, allocation_id, checkpoint_uri, self._clock.now())
            if row is None:
                state = store.get_allocation(conn, allocation_id, with_events=False).state
                raise FailedPrecondition(
                    f"allocation {allocation_id} is {state}: only work holding GPUs checkpoints"
                )
        return AllocationRecord.from_mapping(row)

    def preempt(self, caller: Caller, allocation_id: str, grace_s: float) -> AllocationRecord:
        record = self.get(caller, allocation_id)
        if record.state not in ("placed", "running"):
            raise FailedPrecondition(
                f"allocation {allocation_id} is {record.state}: nothing to preempt"
            )
        grace = grace_s or PRIORITY_CLASSES[record.priority_class].grace_s
        # preempted_for names the waiting allocation a victim makes room for;
        # "admin" marks a manual preemption (the reason names who).
        self._allocator.preempt(
            [allocation_id], "admin", grace, f"preempted by {caller.describe()}"
        )
        return self.get(caller, allocation_id)

    def allocator_stats(self) -> AllocatorStats:
        return self._allocator.stats()

    def queue(self, limit: int) -> list[AllocationRecord]:
        if limit > store.MAX_PAGE_SIZE:
            raise InvalidArgument(f"limit may be at most {store.MAX_PAGE_SIZE}, got {limit}")
        with self._engine.connect() as conn:
            return store.queue_order(conn, limit or store.DEFAULT_PAGE_SIZE)

    def get(self, caller: Caller, allocation_id: str, check: bool = True) -> AllocationRecord:
        with self._engine.connect() as conn:
            record = store.get_allocation(conn, allocation_id)
        if check and not caller.reads_all_tenants:
            require_tenant(caller, record.tenant, f"allocation {allocation_id}")
        return record

    def list(
        self,
        caller: Caller,
        tenant: str,
        state: str,
        node: str,
        page_size: int,
        page_token: str,
        request_id: str = "",
    ) -> tuple[list[AllocationRecord], str]:
        scope = tenant_scope(caller)
        if scope is not None:
            require_tenant(caller, tenant or scope, "the listed tenant")
            tenant = scope
        with self._engine.connect() as conn:
            return store.list_allocations(
                conn, tenant, state, node, page_size, page_token, request_id
            )

    def watch(
        self, caller: Caller, allocation_id: str, is_active: Callable[[], bool]
    ) -> Iterator[tuple[AllocationRecord, AllocationEvent | None]]:
        """The allocation with its latest event, then one item per later event."""
        with self._notifier.watching(allocation_id):
            version = self._notifier.version(allocation_id)
            record = self.get(caller, allocation_id)
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


def _require_batch_size(count: int, what: str) -> None:
    if count > MAX_BATCH_ITEMS:
        raise InvalidArgument(f"{what} has {count} entries; the limit is {MAX_BATCH_ITEMS}")


def _require_may_release(caller: Caller) -> None:
    if caller.role is Role.AGENT:
        raise _agent_may_not_release()


def _agent_may_not_release() -> PermissionDenied:
    return PermissionDenied("an agent may not release allocations")


def _merged(early: Sequence[Outcome | None], later: Sequence[Outcome]) -> list[Outcome]:
    """`early` with each None filled, in order, from `later` (the outcomes of
    the items that passed the early checks)."""
    if len(later) != sum(outcome is None for outcome in early):
        raise RuntimeError(f"{len(later)} outcomes for {len(early)} items")
    rest = iter(later)
    return [outcome if outcome is not None else next(rest) for outcome in early]
