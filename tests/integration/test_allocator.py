"""The allocator on its own (no gRPC), against real PostgreSQL: a bad command
fails alone, deadlines hold, the queue runs on the leader only, and a tenant's
queue is capped."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from gpupool.v1 import scheduler_pb2, types_pb2
from scheduler.allocator.allocator import Allocator
from scheduler.allocator.batch import NO_ROOM_MEMO_S, Batch
from scheduler.allocator.notifier import ChangeNotifier
from scheduler.allocator.pending_counts import REFUSE_WITHIN_S
from scheduler.api.converters import allocation_spec
from scheduler.app import SchedulerApp
from scheduler.domain.allocation import AllocationSpec
from scheduler.domain.callers import SYSTEM
from scheduler.domain.clock import ManualClock
from scheduler.domain.errors import InvalidArgument, ResourceExhausted, Unavailable
from scheduler.fleetfile import SimulatedNode
from scheduler.store import allocations as allocations_store
from scheduler.store.batch_sql import BatchStatements
from scheduler.store.fleet import load_nodes
from scheduler.store.records import AllocationRecord
from tests.integration.conftest import Client, register_fleet


def spec(request_id: str, tenant: str = "team-a", **fields: object) -> AllocationSpec:
    """An AllocationSpec as the API builds it, straight from the request message."""
    if not {"whole", "fraction", "mig"} & set(fields):
        fields["fraction"] = types_pb2.FractionalGpu(milli_gpu=100, memory_mib=1024)
    request = scheduler_pb2.AllocateRequest(request_id=request_id, tenant=tenant, **fields)  # type: ignore[arg-type]
    return allocation_spec(request)


def stored(database_url: str, where: str = "true") -> int:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        count = conn.execute(text(f"SELECT count(*) FROM allocations WHERE {where}")).scalar_one()
    engine.dispose()
    return int(count)


def test_a_poisoned_command_fails_alone(fleet_client: Client, app: SchedulerApp) -> None:
    good = [spec(f"ok-{i}") for i in range(20)]
    # Reach the allocator past the API's checks: a NUL the database refuses,
    # and a priority class that makes the batch's own code raise.
    refused = replace(spec("nul"), labels={"team": "a\x00b"})
    broken = replace(spec("bug"), priority_class="no-such-class")
    commands: list[AllocationSpec] = [*good[:10], refused, broken, *good[10:]]
    with ThreadPoolExecutor(len(commands)) as pool:
        futures = [pool.submit(app.allocator.allocate, s) for s in commands]
    results: list[AllocationRecord | BaseException] = []
    for future in futures:
        error = future.exception()
        results.append(error if error is not None else future.result())
    valid = [r for s, r in zip(commands, results, strict=True) if s in good]
    assert all(isinstance(r, AllocationRecord) and r.state == "placed" for r in valid), valid
    assert isinstance(results[10], InvalidArgument)
    assert "refused a value" in str(results[10]) and "\x00" not in str(results[10])
    assert isinstance(results[11], KeyError), "a bug answers only its own caller"
    assert stored(app.database_url) == 20


def test_a_command_past_its_deadline_is_never_applied(
    clean_database: str, clock: ManualClock, start_app: Callable[[], SchedulerApp]
) -> None:
    app = start_app()
    allocator = Allocator(app.engine, ChangeNotifier(), clock, "test-replica")  # not started
    outcome: list[BaseException] = []

    def ask() -> None:
        try:
            allocator.allocate(spec("late"), deadline=time.monotonic() + 0.3)
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=ask)
    caller.start()
    caller.join(timeout=10)
    assert outcome and isinstance(outcome[0], TimeoutError), "the caller was told it failed"
    allocator.start()  # the command is still queued: it must be dropped, not applied
    try:
        assert allocator.place_pending() == 0  # a command after it has run by now
        assert stored(clean_database) == 0
    finally:
        allocator.stop()


def test_a_lost_database_is_unavailable(app: SchedulerApp, clock: ManualClock) -> None:
    nowhere = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")
    allocator = Allocator(nowhere, ChangeNotifier(), clock, "test-replica")
    allocator.start()
    try:
        with pytest.raises(Unavailable, match="database is unavailable") as info:
            allocator.allocate(spec("x"))
        assert "127.0.0.1" not in str(info.value)
    finally:
        allocator.stop()
        nowhere.dispose()


@pytest.fixture
def capped_app(
    start_app: Callable[[], SchedulerApp], mixed_fleet: list[SimulatedNode]
) -> Iterator[SchedulerApp]:
    """A scheduler on the mixed fleet whose tenants may each have 2 allocations waiting."""
    app = start_app()
    admin = Client.as_admin(app)
    register_fleet(admin, mixed_fleet)
    app.allocator.max_pending_per_tenant = 2
    try:
        yield app
    finally:
        admin.close()


WHOLE_B200: dict[str, Any] = {"whole": types_pb2.WholeGpus(count=8), "gpu_models": ["B200"]}


def test_a_tenant_cannot_queue_without_bound(clean_database: str, capped_app: SchedulerApp) -> None:
    allocator = capped_app.allocator
    first = allocator.allocate(spec("b-0", **WHOLE_B200))
    assert first.state == "placed"  # the only B200 node is now full
    waiting = [allocator.allocate(spec(f"b-{i}", **WHOLE_B200)) for i in (1, 2)]
    assert [w.state for w in waiting] == ["pending", "pending"]
    with pytest.raises(ResourceExhausted, match="already has 2 allocations waiting"):
        allocator.allocate(spec("b-3", **WHOLE_B200))
    other = allocator.allocate(spec("c-1", tenant="team-b", **WHOLE_B200))
    assert other.state == "pending", "the cap is per tenant"
    assert stored(clean_database, "state = 'pending'") == 3


def test_the_cap_counts_what_waits_now_before_it_refuses(
    clock: ManualClock, capped_app: SchedulerApp
) -> None:
    """Counts are kept between batches and only counted up: a refusal is
    decided on a fresh count, so room a cancel made is seen."""
    allocator = capped_app.allocator
    assert allocator.allocate(spec("b-0", **WHOLE_B200)).state == "placed"
    waiting = [allocator.allocate(spec(f"b-{i}", **WHOLE_B200)) for i in (1, 2)]
    with pytest.raises(ResourceExhausted):
        allocator.allocate(spec("b-3", **WHOLE_B200))
    allocator.release(waiting[0].id, "changed my mind")  # one fewer waits
    clock.advance(REFUSE_WITHIN_S + 0.5)  # the kept count is too old to refuse by
    assert allocator.allocate(spec("b-4", **WHOLE_B200)).state == "pending"
    with pytest.raises(ResourceExhausted, match="already has 2 allocations waiting"):
        allocator.allocate(spec("b-5", **WHOLE_B200))


def test_only_the_leader_runs_the_queue(
    start_app: Callable[[], SchedulerApp], mixed_fleet: list[SimulatedNode]
) -> None:
    leader, follower = start_app(), start_app()
    assert leader.leader.is_leader and not follower.leader.is_leader
    admin = Client.as_admin(follower)
    register_fleet(admin, mixed_fleet)
    big: dict[str, Any] = {"whole": types_pb2.WholeGpus(count=8), "gpu_models": ["B200"]}
    try:
        held = follower.allocator.allocate(spec("hold", **big))
        waiting = follower.allocator.allocate(spec("wait", **big))
        assert waiting.state == "pending"
        follower.allocator.request_pending_pass()
        assert follower.allocator.place_pending() == 0, "a follower's pass places nothing"
        follower.allocator.release(held.id, "done")  # frees capacity on the follower
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            state = leader.allocations.get(SYSTEM, waiting.id).state
            if state == "placed":
                break
            leader.allocator.place_pending()
            time.sleep(0.1)
        assert state == "placed", "the leader placed what the follower freed"
        assert follower.allocator.passes_run == 0
        assert leader.allocator.passes_run > 0
    finally:
        admin.close()


def test_the_queue_runs_only_when_freed_capacity_could_admit_a_waiting_request(
    app: SchedulerApp, fleet_client: Client
) -> None:
    big: dict[str, Any] = {"whole": types_pb2.WholeGpus(count=8), "gpu_models": ["B200"]}
    held = app.allocator.allocate(spec("hold", **big))
    assert app.allocator.allocate(spec("wait", **big)).state == "pending"
    app.allocator.place_pending()  # a full pass: the allocator now knows what waits
    passes = app.allocator.passes_run
    small = app.allocator.allocate(spec("l4", gpu_models=["L4"]))
    app.allocator.release(small.id, "done")  # frees an L4: nothing waiting can use it
    assert app.allocator.passes_run == passes, "no queue read for capacity no one waits for"
    app.allocator.release(held.id, "done")  # frees the B200s: the waiting request fits
    assert app.allocator.passes_run == passes + 1
    assert stored(app.database_url, "request_id = 'wait' AND state = 'placed'") == 1


def test_releasing_what_another_replica_placed_before_hearing_of_it(
    start_app: Callable[[], SchedulerApp], mixed_fleet: list[SimulatedNode]
) -> None:
    """A replica whose snapshot lacks a claim (its NOTIFY not heard yet) still
    releases it, and reloads, instead of failing INTERNAL."""
    deaf, other = start_app(), start_app()
    admin = Client.as_admin(deaf)
    register_fleet(admin, mixed_fleet)
    try:
        fraction: dict[str, Any] = {
            "fraction": types_pb2.FractionalGpu(milli_gpu=700, memory_mib=1024)
        }
        deaf.allocator.allocate(spec("warm-up", **fraction))  # its snapshot is loaded
        deaf.listener.stop()  # from now on it hears nothing of the other replica
        placed = other.allocator.allocate(spec("elsewhere", **fraction))
        assert placed.state == "placed"
        released = deaf.allocator.release(placed.id, "done")
        assert released.state == "released"
        again = deaf.allocator.allocate(spec("after", **fraction))
        assert again.state == "placed", "the reloaded snapshot places as usual"
    finally:
        admin.close()


def test_preemption_that_cannot_help_is_not_weighed_again_for_a_while(
    app: SchedulerApp, fleet_client: Client, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood of requests no preemption can help reads the running work once
    per tenant and shape, not once per batch."""
    reads: list[int] = []
    running_below = allocations_store.running_below

    def counted(*args: Any) -> Any:
        reads.append(1)
        return running_below(*args)

    monkeypatch.setattr(allocations_store, "running_below", counted)
    big: dict[str, Any] = {"whole": types_pb2.WholeGpus(count=8), "gpu_models": ["B200"]}
    assert app.allocator.allocate(spec("hold", **big)).state == "placed"
    # Same priority as the holder: nothing to preempt, in three batches.
    for i in range(3):
        assert app.allocator.allocate(spec(f"wait-{i}", **big)).state == "pending"
    assert len(reads) == 1
    app.allocator.allocate(spec("other", tenant="team-b", **big))
    assert len(reads) == 2, "another tenant's entitlement is weighed on its own"
    clock.advance(NO_ROOM_MEMO_S + 1)
    app.allocator.allocate(spec("wait-3", **big))
    assert len(reads) == 3, "weighed again once the memo expired"


def test_a_batch_costs_two_round_trips(app: SchedulerApp, fleet_client: Client) -> None:
    """BEGIN with the opening read, then the writes with COMMIT: nothing else
    for allocations that place or releases, whichever comes."""
    allocator = app.allocator
    held = allocator.allocate(spec("warm-up"))  # the first batch also loads quotas
    allocator.release(held.id, "done")
    batches, trips = allocator.batches_committed, allocator.round_trips
    for i in range(5):
        placed = allocator.allocate(spec(f"rt-{i}"))
        assert placed.state == "placed"
        allocator.release(placed.id, "done")
    assert allocator.batches_committed - batches == 10
    assert allocator.round_trips - trips == 20


def test_committed_batches_account_for_their_round_trips_wall_time(
    app: SchedulerApp, fleet_client: Client
) -> None:
    """The allocator's wall-time split (bench.allocator_alone's shares) grows
    with each committed batch, and its two round trips are parts of the batch."""
    seconds = app.allocator.seconds
    before = replace(seconds)
    placed = app.allocator.allocate(spec("timed"))
    app.allocator.release(placed.id, "done")
    opening = seconds.opening_read - before.opening_read
    closing = seconds.closing_write - before.closing_write
    assert opening > 0 and closing > 0
    assert opening + closing <= seconds.in_batches - before.in_batches


def test_a_committed_batch_leaves_no_reference_cycle(
    app: SchedulerApp, fleet_client: Client
) -> None:
    """What a batch held is freed by reference counting when it ends, not left
    to the collector (whose full passes stall the allocator: collector.py)."""
    allocator = app.allocator
    allocator.release(allocator.allocate(spec("warm")).id, "done")
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for i in range(5):
            allocator.release(allocator.allocate(spec(f"cycle-{i}")).id, "done")
        gc.collect()
        left = [o for o in gc.garbage if isinstance(o, Batch | BatchStatements | AllocationRecord)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert left == []


def test_another_replicas_claims_reload_only_their_nodes(
    start_app: Callable[[], SchedulerApp], mixed_fleet: list[SimulatedNode]
) -> None:
    """A capacity notification names the nodes and the tenants' usage a batch
    changed: the other replica reloads those nodes, not its whole snapshot
    (8-9 s at 100,000 GPUs), and still sees the claim and counts its usage."""
    taker, other = start_app(), start_app()
    admin = Client.as_admin(taker)
    register_fleet(admin, mixed_fleet)
    whole8: dict[str, Any] = {"whole": types_pb2.WholeGpus(count=8), "gpu_models": ["B200"]}
    whole1: dict[str, Any] = {"whole": types_pb2.WholeGpus(count=1), "gpu_models": ["B200"]}

    def other_counts(units: Callable[[float], bool]) -> bool:
        """Whether the other replica, once it has heard, counts team-a's usage so."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            other.allocator.place_pending()  # a batch: applies what it heard
            if units(other.allocator.tenant_usage().get("team-a", 0.0)):
                return True
            time.sleep(0.05)
        return False

    try:
        other.allocator.allocate(spec("warm-up", tenant="team-b"))  # its snapshot is loaded
        reloads = other.allocator.full_reloads
        held = taker.allocator.allocate(spec("all-b200", **whole8))
        assert held.state == "placed"
        assert other_counts(lambda units: units > 0), "the other replica counts the claim"
        late = other.allocator.allocate(spec("one-b200", **whole1))
        assert late.state == "pending", "it saw the B200 node full, without a lost race"
        taker.allocator.release(held.id, "done")
        assert other_counts(lambda units: units == 0), "and the release"
        again = other.allocator.allocate(spec("one-b200-again", **whole1))
        assert again.state == "placed", "it saw the node free again"
        assert other.allocator.full_reloads == reloads, "no full snapshot reload"
    finally:
        admin.close()


def test_reloading_more_nodes_than_a_statement_has_parameters_for(
    app: SchedulerApp, fleet_client: Client, mixed_fleet: list[SimulatedNode]
) -> None:
    """A per-node reload names its nodes in one array parameter: more names
    than PostgreSQL's 65,535 bind parameters is still one statement."""
    names = [n.name for n in mixed_fleet] + [f"absent-{i}" for i in range(70_000)]
    with app.engine.connect() as conn:
        loaded = load_nodes(conn, names)
    assert sorted(n.name for n in loaded) == sorted(n.name for n in mixed_fleet)


def test_a_lost_race_reloads_the_nodes_it_was_lost_on(
    start_app: Callable[[], SchedulerApp], mixed_fleet: list[SimulatedNode]
) -> None:
    """A replica that has not heard of the other's claim loses the race for it
    at commit (the database's constraints), then reloads the nodes its batch
    touched, not the whole fleet, and answers from what it finds there."""
    deaf, other = start_app(), start_app()
    admin = Client.as_admin(deaf)
    register_fleet(admin, mixed_fleet)
    whole8: dict[str, Any] = {"whole": types_pb2.WholeGpus(count=8), "gpu_models": ["B200"]}
    try:
        deaf.allocator.allocate(spec("warm-up"))  # its snapshot is loaded
        deaf.listener.stop()  # from now on it hears nothing of the other replica
        reloads = deaf.allocator.full_reloads
        assert other.allocator.allocate(spec("first", **whole8)).state == "placed"
        late = deaf.allocator.allocate(spec("second", **whole8))
        assert late.state == "pending", "the B200 node is taken: it waits"
        assert deaf.allocator.full_reloads == reloads, "only the lost node was reloaded"
    finally:
        admin.close()
