"""The commit path: every change to who holds which GPU, in batches.

One worker thread per scheduler process owns the in-memory fleet snapshot.
RPC threads and loops hand it commands and wait; it takes whatever has
queued up and runs it as one database transaction — releases, requeues,
revocations and preemption notices first, then (on the leader) the pending
queue, then new requests — so throughput does not cost one round trip per
request. PostgreSQL's constraints stay the judge: if another replica got
there first the transaction fails, the nodes the batch touched are reloaded
and the commands are retried one by one.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Connection, Engine, RootTransaction, event
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from scheduler.allocator import commands as cmd
from scheduler.allocator.batch import Batch, no_room_memo
from scheduler.allocator.capacity import CapacityChange, TxSnapshot
from scheduler.allocator.collector import FullPasses
from scheduler.allocator.notifier import ChangeNotifier
from scheduler.allocator.pending_counts import PendingCounts
from scheduler.allocator.placing import apply_allocates, apply_pending_pass
from scheduler.allocator.revoking import (
    apply_preempts,
    apply_releases,
    apply_requeues,
    apply_revokes,
)
from scheduler.allocator.waiting import WaitingModels
from scheduler.domain.allocation import AllocationSpec
from scheduler.domain.clock import Clock
from scheduler.domain.errors import Aborted, InvalidArgument, LeaseLost, Unavailable
from scheduler.domain.fleet import FleetSnapshot, SnapshotConflict
from scheduler.domain.quotas import TenantQuota
from scheduler.logs import allocation_changed
from scheduler.metrics import instruments
from scheduler.placement import PlacementConfig
from scheduler.placement.preferences import is_spot
from scheduler.store.batch_sql import BatchStatements, translated
from scheduler.store.database import current_snapshot, refused_by_driver, snapshot_connection
from scheduler.store.fleet import load_nodes, load_snapshot
from scheduler.store.records import AllocationRecord
from scheduler.store.tenants import load_usage

log = logging.getLogger(__name__)


class _QuietAbortedPipeline(logging.Filter):
    """psycopg warns when it leaves a pipeline a lost race aborted; the
    allocator already handles (and logs) that race."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "error ignored terminating" not in record.getMessage()


logging.getLogger("psycopg").addFilter(_QuietAbortedPipeline())

MAX_BATCH = 256
# New requests one tenant may put in a batch; the rest wait for the next one,
# so a flood from one tenant shares every batch with everyone else.
PER_TENANT_PER_BATCH = 32
DEFAULT_TIMEOUT_S = 30.0
QUOTAS_TTL_S = 5.0  # quotas set on another replica apply within this long
# A tenant may have this many allocations waiting (SchedulerSettings overrides).
DEFAULT_MAX_PENDING_PER_TENANT = 1000
C = TypeVar("C", bound=cmd.Command)


def _of(commands: Sequence[cmd.Command], kind: type[C]) -> list[C]:
    return [c for c in commands if isinstance(c, kind)]


@dataclass(frozen=True)
class AllocatorStats:
    """Counters since start (benchmarks read them through Admin.GetAllocatorStats)."""

    replica_id: str
    leader: bool
    batches: int
    commands: int
    round_trips: int
    pending_passes: int


@dataclass
class AllocatorSeconds:
    """Wall seconds of the committed batches, since start: where the allocator
    thread's time goes (bench.allocator_alone prints the shares). The rest of
    its time it waited for commands."""

    in_batches: float = 0.0  # from the transaction's start to its commit
    opening_read: float = 0.0  # the opening read's round trip
    closing_write: float = 0.0  # building and sending the writes, and the commit


def _outcome(command: cmd.Command, timeout: float) -> Any:
    try:
        return command.future.result(timeout=timeout)
    except Exception as exc:
        return exc


def _live(commands: Sequence[cmd.Command], now: float) -> list[cmd.Command]:
    """The commands still worth running: not cancelled by a caller who gave
    up, not past their deadline. Marks them running, so they can no longer
    be cancelled."""
    live = []
    for command in commands:
        if not command.future.set_running_or_notify_cancel():
            continue  # its caller timed out and cancelled it
        if command.deadline is not None and now > command.deadline:
            command.future.set_exception(TimeoutError("the caller's deadline passed first"))
            continue
        live.append(command)
    return live


def _fail(commands: Sequence[cmd.Command], error: BaseException) -> None:
    for command in commands:
        if not command.future.done():
            command.future.set_exception(error)


def _first_error(exc: BaseException) -> BaseException:
    """The error that started it: in a pipeline, a refused statement is
    followed by "transaction aborted" errors that chain onto it."""
    seen = exc
    while isinstance(seen, DBAPIError) and isinstance(
        seen.orig, psycopg.errors.InFailedSqlTransaction | psycopg.errors.PipelineAborted
    ):
        context = seen.__context__ or seen.__cause__
        if not isinstance(context, Exception):
            break
        seen = context
    return seen


def _own_error(exc: BaseException) -> BaseException:
    """What the caller of the one command that failed is told."""
    if isinstance(exc, DBAPIError):
        # A value the database refused (e.g. out of range): the request's fault.
        log.warning("the database refused a command: %s", type(exc.orig).__name__)
        return InvalidArgument("the scheduler's database refused a value of this request")
    log.error("allocator command failed", exc_info=exc)
    return exc  # a bug: the interceptor answers INTERNAL with a request id


def _attach_workers(batch: Batch, allocates: Sequence[cmd.Allocate]) -> None:
    """New rows carry their worker spec (every row the same keys: one executemany)."""
    specs = {(c.spec.tenant, c.spec.request_id): c.spec.worker for c in allocates}
    for row in batch.new_rows:
        worker = specs.get((row["tenant"], row["request_id"]))
        row["worker"] = worker.as_json() if worker is not None else None
    for command in allocates:
        result = batch.results.get(id(command))
        worker = command.spec.worker
        if worker is not None and isinstance(result, AllocationRecord) and result.worker is None:
            batch.results[id(command)] = replace(result, worker=worker.as_json())


class Allocator:
    def __init__(
        self,
        engine: Engine,
        notifier: ChangeNotifier,
        clock: Clock,
        replica_id: str,
        is_leader: Callable[[], bool] = lambda: True,
        fence: Callable[[Connection], object] = lambda conn: None,
        placement_config: PlacementConfig | None = None,
        max_pending_per_tenant: int = DEFAULT_MAX_PENDING_PER_TENANT,
    ) -> None:
        self.max_pending_per_tenant = max_pending_per_tenant
        # Counted for tests and benchmarks: passes this replica ran, batches committed.
        self.passes_run = 0
        self.batches_committed = 0
        self.commands_committed = 0
        self.round_trips = 0  # database round trips of committed batches
        self.seconds = AllocatorSeconds()
        self.full_reloads = 0  # whole-snapshot loads (start, lost races, lost notifications)
        self._engine = engine
        self._notifier = notifier
        self._clock = clock
        self._replica_id = replica_id
        self._is_leader = is_leader
        # Inside a batch about to do leader-only work: holds the lease row or
        # raises LeaseLost (background/leader.py).
        self._fence = fence
        self._config = placement_config or PlacementConfig()
        self._queue: queue.Queue[cmd.Command] = queue.Queue()
        self._snapshot = FleetSnapshot()
        self._usage: dict[str, float] = {}  # units per tenant, reloaded with the snapshot
        self._shape_changed = True  # nodes came, went or changed since the last pass
        self._waiting = WaitingModels()  # what waits may use any model until a pass sees
        # Requests preemption could not help lately, timed by the scheduler's clock.
        self._no_room = no_room_memo(lambda: self._clock.now().timestamp())
        # Waiting allocations per tenant, for the cap on them (scheduler's clock too).
        self._pending_counts = PendingCounts(lambda: self._clock.now().timestamp())
        self._forget_no_room = False  # set from other threads; cleared on the allocator's
        self._spot: frozenset[str] | None = None  # spot nodes of the snapshot (None: work out)
        # Tenant quotas, read at most every QUOTAS_TTL_S (at once after quotas_changed).
        self._quotas: dict[str, TenantQuota] | None = None
        self._quotas_read_at = -math.inf
        self._stale = True
        self._stale_nodes: set[str] = set()
        # Other replicas' usage deltas by transaction, and what the last full load saw.
        self._usage_deltas: list[CapacityChange] = []
        self._open_batch: Batch | None = None  # the batch in flight (what a rollback undoes)
        self._loaded_tx: TxSnapshot | None = None
        self._stale_lock = threading.Lock()
        self._maybe_pending = True
        self._maybe_reserved = True
        self._pass_queued = threading.Event()
        self._full_passes = FullPasses()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="allocator", daemon=True)
        # Called after each commit with the nodes whose allocations changed.
        self.on_nodes_changed: Callable[[set[str]], None] = lambda nodes: None
        # One listener on the engine, not one per batch's connection: a listener on
        # a connection ties it, its batch and all the batch held into a reference
        # cycle, left to the collector (whose full passes stalled the allocator).
        event.listen(engine, "before_cursor_execute", self._count_statement)

    # -- public API (called from RPC threads and loops) -------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)
        if event.contains(self._engine, "before_cursor_execute", self._count_statement):
            event.remove(self._engine, "before_cursor_execute", self._count_statement)

    def _count_statement(self, conn: Connection, *_: object) -> None:
        batch = self._open_batch
        if batch is not None and conn is batch.conn:
            batch.count_statement()

    def allocate(self, spec: AllocationSpec, deadline: float | None = None) -> AllocationRecord:
        return self._submit(cmd.Allocate(spec), deadline=deadline)  # type: ignore[no-any-return]

    def release(
        self,
        allocation_id: str,
        reason: str,
        tenant: str | None = None,
        deadline: float | None = None,
    ) -> AllocationRecord:
        """Release; with `tenant`, only if the allocation is that tenant's."""
        command = cmd.Release(allocation_id, reason, tenant)
        return self._submit(command, deadline=deadline)  # type: ignore[no-any-return]

    def allocate_many(
        self, specs: Sequence[AllocationSpec], deadline: float | None = None
    ) -> list[AllocationRecord | BaseException]:
        """Several requests queued at once (they usually share one batch);
        each answered on its own: a record, or the error of that request alone."""
        return self._submit_many([cmd.Allocate(s) for s in specs], deadline)

    def release_many(
        self,
        allocation_ids: Sequence[str],
        reason: str,
        tenant: str | None = None,
        deadline: float | None = None,
    ) -> list[AllocationRecord | BaseException]:
        commands = [cmd.Release(i, reason, tenant) for i in allocation_ids]
        return self._submit_many(commands, deadline)

    def stats(self) -> AllocatorStats:
        return AllocatorStats(
            self._replica_id,
            self._is_leader(),
            self.batches_committed,
            self.commands_committed,
            self.round_trips,
            self.passes_run,
        )

    def tenant_usage(self) -> dict[str, float]:
        """Units each tenant holds as this replica counts them (its quotas and fair share)."""
        return dict(self._usage)

    def place_pending(self) -> int:
        """Run one pass over the pending queue now; returns how many were placed."""
        return self._submit(cmd.PendingPass(), 60.0)  # type: ignore[no-any-return]

    def requeue(self, allocation_ids: Sequence[str], reason: str, leader_only: bool = False) -> int:
        """Returns how many allocations were moved off their GPUs.

        Mark the snapshot stale first if the cause (an unhealthy GPU, an
        unreachable or draining node) is new, so nothing lands there again.
        """
        if not allocation_ids:
            return 0
        command = cmd.Requeue(tuple(allocation_ids), reason, leader_only)
        return self._submit(command, 60.0)  # type: ignore[no-any-return]

    def preempt(
        self, allocation_ids: Sequence[str], preempted_for: str, grace_s: float, reason: str
    ) -> int:
        """Ask victims to checkpoint within grace_s; returns how many were asked."""
        command = cmd.Preempt(tuple(allocation_ids), preempted_for, grace_s, reason)
        return self._submit(command)  # type: ignore[no-any-return]

    def revoke(
        self, allocation_id: str, checkpoint_uri: str, how: str, by: str = ""
    ) -> AllocationRecord:
        return self._submit(cmd.Revoke(allocation_id, checkpoint_uri, how, by))  # type: ignore[no-any-return]

    def place_pending_if_leader(self) -> None:
        """After a fleet change: the leader runs the queue before answering,
        other replicas leave it to the leader (it hears their NOTIFY)."""
        if self._is_leader():
            self.place_pending()

    def request_pending_pass(self) -> None:
        """Ask for a pass without waiting for it; coalesces repeated requests.
        Only the leader runs the queue: elsewhere this does nothing."""
        if self._pass_queued.is_set() or not self._is_leader():
            return
        self._pass_queued.set()
        self._queue.put(cmd.PendingPass())

    def mark_stale(self, pending_may_exist: bool = True) -> None:
        """The fleet changed elsewhere: reload the snapshot before the next batch."""
        self._stale = True
        self._maybe_reserved = True  # another replica may have started a preemption
        self._notifier.publish_fleet()
        if pending_may_exist:
            self._maybe_pending = True
            self._waiting.widen()

    def capacity_changed(self, change: CapacityChange) -> None:
        """Another replica's batch changed claims on these nodes: reload just them
        and add its usage deltas before the next batch (not the whole snapshot)."""
        with self._stale_lock:
            self._stale_nodes.update(change.nodes)
            if change.usage:
                self._usage_deltas.append(change)
        self._maybe_reserved = True  # another replica may have started a preemption
        self._maybe_pending = True
        self._waiting.widen()
        self._notifier.publish_fleet()

    def quotas_changed(self) -> None:
        """A tenant's quota or weight changed: read them again before the next pass."""
        self._quotas_read_at = -math.inf
        self._forget_no_room = True  # entitlement to preempt may have changed

    def refresh_nodes(self, names: Sequence[str]) -> None:
        """These nodes changed (state, health, GPUs): reload just them before
        the next batch — a full reload of a large fleet costs far more."""
        with self._stale_lock:
            self._stale_nodes.update(names)
        self._maybe_pending = True
        self._waiting.widen()
        self._notifier.publish_fleet()  # `gpupool top` shows node and GPU changes

    # -- worker -----------------------------------------------------------------

    def _submit(
        self,
        command: cmd.Command,
        timeout: float = DEFAULT_TIMEOUT_S,
        deadline: float | None = None,
    ) -> Any:
        """Queue the command and wait for its answer (see _submit_many)."""
        answer = self._submit_many([command], deadline, timeout)[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def _submit_many(
        self,
        commands: Sequence[cmd.Command],
        deadline: float | None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> list[Any]:
        """Queue the commands and wait for each answer (a result or an error)
        until the caller's deadline (or `timeout`). A command not yet started
        by then is cancelled: the allocator never applies it."""
        if self._stopped.is_set():
            raise Unavailable("the scheduler is shutting down; retry against another replica")
        until = min(time.monotonic() + timeout, deadline or math.inf)
        for command in commands:
            command.deadline = until
            self._queue.put(command)
        return [self._answer(command, until) for command in commands]

    @staticmethod
    def _answer(command: cmd.Command, until: float) -> Any:
        try:
            return command.future.result(timeout=max(0.0, until - time.monotonic()))
        except FutureTimeout:
            if command.future.cancel():
                return TimeoutError("the allocator did not reach this request in time")
            # Already being applied: its answer is moments away, and true.
            return _outcome(command, DEFAULT_TIMEOUT_S)
        except Exception as exc:
            return exc

    def _run(self) -> None:
        held: list[cmd.Command] = []  # over a tenant's share of the last batch
        while not self._stopped.is_set():
            waiting = held
            if not waiting:
                try:
                    waiting = [self._queue.get(timeout=0.2)]
                except queue.Empty:
                    self._full_passes.maybe_run(idle=True)
                    continue
            while len(waiting) < 4 * MAX_BATCH:
                try:
                    waiting.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            batch, held = cmd.take_batch(waiting, MAX_BATCH, PER_TENANT_PER_BATCH)
            self._run_batch(batch)
            self._full_passes.maybe_run(idle=False)

    def _run_batch(self, commands: Sequence[cmd.Command]) -> None:
        if _of(commands, cmd.PendingPass):
            self._pass_queued.clear()
        commands = _live(commands, time.monotonic())
        if commands:
            self._run_live(commands)

    def _run_live(self, commands: Sequence[cmd.Command]) -> None:
        """Run as one transaction. If it fails, nothing was written: a lost race
        is retried on a fresh snapshot; any other failure is narrowed down by
        running each command alone, so one bad command fails by itself."""
        started = time.perf_counter()
        for attempt in range(3):
            try:
                self._refresh()
                batch = self._execute(commands)
            except (
                OperationalError,
                InterfaceError,
                psycopg.OperationalError,
                psycopg.InterfaceError,
            ) as exc:
                # psycopg's own: a pipeline that lost its server mid-flight
                # raises from its exit, where SQLAlchemy does not wrap it.
                cause = exc.orig if isinstance(exc, DBAPIError) else exc
                self._stale = True
                if refused_by_driver(exc):  # a bug, not an outage: INTERNAL, logged
                    _fail(commands, exc)
                    return
                log.warning("allocator lost the database: %s", type(cause).__name__)
                _fail(commands, Unavailable("the scheduler's database is unavailable; retry"))
                return
            except Exception as raised:
                first = _first_error(raised)
                if not (isinstance(first, IntegrityError) and attempt == 0):
                    # A bug, or a race lost again on the reloaded nodes: everything.
                    self._stale = True
                if len(commands) > 1:
                    for command in commands:
                        self._run_live([command])
                    return
                if isinstance(first, IntegrityError | SnapshotConflict):
                    # Another replica took the capacity this snapshot thought free,
                    # or changed claims it has not heard of yet.
                    kind = type(getattr(first, "orig", first)).__name__
                    log.info("a command lost a race (%s); reloading its nodes", kind)
                    time.sleep(0.01 * (attempt + 1))
                    continue
                _fail(commands, _own_error(first))
                return
            self._finish(commands, batch)
            instruments.BATCH_SIZE.observe(len(commands))
            instruments.BATCH_LATENCY.observe(time.perf_counter() - started)
            for how in batch.revocations:
                instruments.PREEMPTIONS.labels(how).inc()
            return
        _fail(commands, Aborted("lost the race for capacity three times; retry the request"))

    def _refresh(self) -> None:
        """Bring the snapshot up to date: whole, or the nodes known to have changed."""
        with self._stale_lock:
            nodes, self._stale_nodes = self._stale_nodes, set()
            deltas, self._usage_deltas = self._usage_deltas, []
        if self._stale:
            # Cleared before the read: a change notified while it runs marks
            # the snapshot stale again instead of being lost with the flag.
            self._stale = False
            try:
                with snapshot_connection(self._engine) as conn:
                    self._loaded_tx = TxSnapshot.parse(current_snapshot(conn))
                    self._snapshot = load_snapshot(conn)
                    self._usage = load_usage(conn)
                self.full_reloads += 1
                self._add_usage(deltas)  # skips what the load saw: normally all
            except BaseException:
                self._stale = True
                raise
            self._shape_changed = True
            self._spot = None
            self._no_room.clear()
            # The snapshot is long-lived: keep the collector from rescanning it
            # on every cycle (cuts placement's tail latency). Unfreeze first:
            # what the last freeze kept (the old snapshot among it) is never
            # collected otherwise, and memory would grow with every reload.
            self._full_passes.after_reload()
            return
        self._add_usage(deltas)
        if not nodes:
            return
        with snapshot_connection(self._engine) as conn:
            fresh = load_nodes(conn, nodes)
        for node in fresh:
            self._snapshot.upsert_node(node)
        for gone in nodes - {n.name for n in fresh}:
            if gone in self._snapshot.nodes:
                self._snapshot.remove_node(gone)
        self._shape_changed = True
        if self._spot is not None:  # kept up to date: recomputing it is O(fleet)
            self._spot = (self._spot - nodes) | {n.name for n in fresh if is_spot(n)}

    def _add_usage(self, changes: Sequence[CapacityChange]) -> None:
        """Other replicas' usage deltas, except those the last full load already saw."""
        seen = self._loaded_tx
        for change in changes:
            if seen is not None and seen.sees(change.txid):
                continue
            for tenant, delta in change.usage.items():
                self._usage[tenant] = self._usage.get(tenant, 0.0) + delta

    def _execute(self, commands: Sequence[cmd.Command]) -> Batch:
        self._open_batch = None
        started = time.perf_counter()
        try:
            with self._engine.connect() as conn:
                transaction = conn.begin()
                try:
                    batch = self._execute_in(conn, transaction, commands)
                except BaseException:
                    # A failed pipeline leaves the connection in no state to
                    # roll back cleanly (its error would mask the real one):
                    # drop the connection; PostgreSQL rolls the transaction back.
                    conn.invalidate()
                    raise
        except BaseException:
            self._rolled_back()
            raise
        self.seconds.in_batches += time.perf_counter() - started
        self.seconds.opening_read += batch.opening_s
        self.seconds.closing_write += batch.closing_s
        return batch

    def _rolled_back(self) -> None:
        """The batch's transaction failed, so what it reserved or released in the
        snapshot never happened: reload the nodes it touched (they also hold the
        claims of a race it lost), not the whole fleet (seconds at 100,000 GPUs)."""
        batch, self._open_batch = self._open_batch, None
        if batch is None:
            self._stale = True
            return
        with self._stale_lock:
            self._stale_nodes.update(batch.touched_nodes)

    def _execute_in(
        self, conn: Connection, transaction: RootTransaction, commands: Sequence[cmd.Command]
    ) -> Batch:
        driver = conn.connection.driver_connection
        assert driver is not None, "a checked-out connection has its psycopg connection"
        if self._forget_no_room:
            self._forget_no_room = False
            self._no_room.clear()
        batch = Batch(
            usage=dict(self._usage),
            shape_changed=self._shape_changed,
            max_pending_per_tenant=self.max_pending_per_tenant,
            conn=conn,
            sql=BatchStatements(driver),
            snapshot=self._snapshot,
            config=self._config,
            now=self._clock.now(),
            is_leader=self._is_leader(),
            maybe_pending=self._maybe_pending,
            waiting=self._waiting.copy(),
            spot=self._spot,
            cached_quotas=(
                self._quotas if time.monotonic() - self._quotas_read_at < QUOTAS_TTL_S else None
            ),
            maybe_reserved=self._maybe_reserved,
            no_room=self._no_room,
            pending=self._pending_counts,
        )
        self._open_batch = batch
        if self._config.request_mix is not None:  # FGD learns the mix it packs for
            for allocate in _of(commands, cmd.Allocate):
                self._config.request_mix.record(allocate.spec.placement_request())
        releases, allocates = _of(commands, cmd.Release), _of(commands, cmd.Allocate)
        batch.open(
            [c.allocation_id for c in releases],
            [(c.spec.tenant, c.spec.request_id) for c in allocates],
            sorted({c.spec.tenant for c in allocates}),
        )
        apply_releases(batch, releases)
        requeues, revokes = _of(commands, cmd.Requeue), _of(commands, cmd.Revoke)
        leader_only: list[cmd.Command] = [c for c in requeues if c.leader_only]
        leader_only += [c for c in revokes if c.how == "deadline"]
        if leader_only and not self._fenced(batch, conn):
            lost = LeaseLost("this replica is no longer the leader; the new leader decides")
            for fenced_out in leader_only:
                batch.results[id(fenced_out)] = lost
            requeues = [c for c in requeues if not c.leader_only]
            revokes = [c for c in revokes if c.how != "deadline"]
        apply_requeues(batch, requeues)
        apply_revokes(batch, revokes)
        apply_preempts(batch, _of(commands, cmd.Preempt))
        passes = _of(commands, cmd.PendingPass)
        # The leader places waiting work as soon as capacity frees,
        # before newcomers in the same batch can take it.
        freed_for_queue = (
            batch.freed_capacity
            and batch.maybe_pending
            and batch.waiting.could_use(batch.freed_models)
        )
        # Only the leader runs the queue; a follower's pass places nothing.
        placed = 0
        if batch.is_leader and (passes or freed_for_queue) and self._fenced(batch, conn):
            placed = apply_pending_pass(batch, everything=bool(passes))
        for command in passes:
            batch.results[id(command)] = placed
        apply_allocates(batch, allocates)
        _attach_workers(batch, allocates)
        # Everything left to write, and the commit, in one round trip:
        # nothing below reads, so psycopg's pipeline sends it all at once.
        # A constraint that refuses a claim surfaces at the commit.
        batch.sql.pipelined = True
        closing = time.perf_counter()
        with translated("COMMIT"), driver.pipeline():
            for write in batch.closing_writes:
                write()
            batch.closing_writes.clear()  # closures over the batch: no cycle left behind
            batch.sql.insert_allocations(batch.new_rows)
            batch.sql.insert_claims(batch.new_claims)
            batch.sql.insert_events(batch.events)
            batch.sql.notify(batch.payloads(self._replica_id))
            transaction.commit()
        batch.closing_s = time.perf_counter() - closing
        batch.sql.round_trip(in_pipeline=True)
        return batch

    def _fenced(self, batch: Batch, conn: Connection) -> bool:
        """Whether this batch may do leader-only work: checked once, in the
        batch's own transaction, against the lease's epoch."""
        if batch.fenced is None:
            try:
                self._fence(conn)
                batch.fenced = True
            except LeaseLost:
                batch.fenced = batch.is_leader = False
        return batch.fenced

    def _finish(self, commands: Sequence[cmd.Command], batch: Batch) -> None:
        self._usage = batch.usage
        batch.keep_counts()
        if batch.snapshot_behind:  # it released claims it had not heard of: reload their nodes
            with self._stale_lock:
                self._stale_nodes.update(batch.touched_nodes)
        if batch.passes_run:
            self._shape_changed = False
        self.batches_committed += 1
        self.commands_committed += len(commands)
        self.passes_run += batch.passes_run
        self.round_trips += batch.round_trips
        self._maybe_pending = batch.maybe_pending
        self._waiting = batch.waiting
        self._spot = batch.spot  # computed once per snapshot, not per batch
        if batch.cached_quotas is not None and batch.cached_quotas is not self._quotas:
            self._quotas, self._quotas_read_at = batch.cached_quotas, time.monotonic()
        self._maybe_reserved = batch.maybe_reserved
        for command in commands:
            result = batch.results.get(id(command))
            if isinstance(result, BaseException):
                command.future.set_exception(result)
            else:
                command.future.set_result(result)
        for change in batch.events:
            allocation_changed(
                change["allocation_id"], change["seq"], change["state"], change["message"]
            )
        self._notifier.publish(batch.changed_ids)
        if batch.touched_nodes:
            self.on_nodes_changed(batch.touched_nodes)
