"""AllocateMany and ReleaseMany over real gRPC: each item is answered alone,
with the checks and status codes of the single call; only the call's size
and its wire format fail it as a whole."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from gpupool.v1 import scheduler_pb2, types_pb2
from scheduler.app import SchedulerApp
from scheduler.domain.callers import Role
from scheduler.services.allocations import MAX_BATCH_ITEMS
from tests.integration.conftest import Client
from tests.integration.test_allocate import PENDING, PLACED, allocate

RELEASED = types_pb2.ALLOCATION_STATE_RELEASED
Result = scheduler_pb2.AllocateResult | scheduler_pb2.ReleaseResult


@pytest.fixture
def tenant_a(app: SchedulerApp, fleet_client: Client) -> Iterator[Client]:
    c = Client.with_token(app, Role.SERVICE, "team-a")
    yield c
    c.close()


@pytest.fixture
def tenant_b(app: SchedulerApp, fleet_client: Client) -> Iterator[Client]:
    c = Client.with_token(app, Role.SERVICE, "team-b")
    yield c
    c.close()


def _fraction(request_id: str, milli: int = 100, **kwargs: object) -> scheduler_pb2.AllocateRequest:
    fraction = types_pb2.FractionalGpu(milli_gpu=milli, memory_mib=1000)
    return scheduler_pb2.AllocateRequest(request_id=request_id, fraction=fraction, **kwargs)  # type: ignore[arg-type]


def _code(result: Result) -> str:
    """OK, or the gRPC status code name of the item's error."""
    if result.WhichOneof("result") == "allocation":
        return "OK"
    return scheduler_pb2.ErrorCode.Name(result.error.code).removeprefix("ERROR_CODE_")


def _stored(admin: Client) -> set[tuple[str, str]]:
    listed = admin.admin.ListAllocations(scheduler_pb2.ListAllocationsRequest(page_size=1000))
    return {(a.tenant, a.request_id) for a in listed.allocations}


def test_each_request_of_a_batch_is_answered_alone(tenant_a: Client, fleet_client: Client) -> None:
    earlier = allocate(tenant_a, "earlier", tenant="", fraction=_fraction("").fraction)
    assert earlier.state == PLACED
    requests = [
        _fraction("m-0"),
        _fraction("m-1", milli=200),
        _fraction("m-2", gpu_models=["RTX-9090"]),  # unknown GPU model
        _fraction("m-3", tenant="team-b"),  # another tenant's name
        _fraction("m-4", priority_class="critical"),  # not granted to team-a
        scheduler_pb2.AllocateRequest(request_id="m-5"),  # no resources at all
        _fraction("m-0", milli=300),  # the same id as item 0, another body
        _fraction("earlier", milli=400),  # the same id as a stored one, another body
        _fraction("earlier"),  # the same id and body: the first answer again
    ]
    results = tenant_a.scheduler.AllocateMany(
        scheduler_pb2.AllocateManyRequest(requests=requests)
    ).results

    codes = [_code(r) for r in results]
    assert codes == [
        "OK",
        "OK",
        "INVALID_ARGUMENT",
        "PERMISSION_DENIED",
        "PERMISSION_DENIED",
        "INVALID_ARGUMENT",
        "ALREADY_EXISTS",
        "ALREADY_EXISTS",
        "OK",
    ]
    placed = [results[0].allocation, results[1].allocation]
    assert [(a.tenant, a.request_id, a.state) for a in placed] == [
        ("team-a", "m-0", PLACED),
        ("team-a", "m-1", PLACED),
    ]
    assert placed[1].fraction.milli_gpu == 200
    assert results[8].allocation.id == earlier.id
    assert "unknown GPU model" in results[2].error.message
    assert "team-b" in results[3].error.message
    assert "critical" in results[4].error.message
    # Only the valid requests were stored.
    assert _stored(fleet_client) == {("team-a", "earlier"), ("team-a", "m-0"), ("team-a", "m-1")}


def test_an_admin_batch_spans_tenants_and_may_wait(fleet_client: Client) -> None:
    huge = scheduler_pb2.AllocateRequest(
        tenant="team-b", request_id="big", whole=types_pb2.WholeGpus(count=8)
    )
    nothing_now = scheduler_pb2.AllocateRequest(
        tenant="team-b", request_id="now", whole=types_pb2.WholeGpus(count=8), no_wait=True
    )
    filler = [
        scheduler_pb2.AllocateRequest(
            tenant="team-c", request_id=f"f-{i}", whole=types_pb2.WholeGpus(count=8)
        )
        for i in range(8)
    ]
    requests = [_fraction("a-0", tenant="team-a"), *filler, huge, nothing_now]
    results = fleet_client.scheduler.AllocateMany(
        scheduler_pb2.AllocateManyRequest(requests=requests)
    ).results
    assert len(results) == len(requests)
    assert results[0].allocation.tenant == "team-a"
    states = {r.allocation.state for r in results[1:-1] if r.WhichOneof("result") == "allocation"}
    # The fleet cannot hold ten 8-GPU requests: some wait; the no_wait one is
    # answered on its own (placed if a node was still free, else refused).
    assert PENDING in states
    assert _code(results[-1]) in {"OK", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION"}


def test_each_release_of_a_batch_is_answered_alone(
    tenant_a: Client, tenant_b: Client, fleet_client: Client
) -> None:
    mine = allocate(tenant_a, "r-a", tenant="", fraction=_fraction("").fraction)
    theirs = allocate(tenant_b, "r-b", tenant="", fraction=_fraction("").fraction)
    ids = [mine.id, theirs.id, "alloc-does-not-exist", ""]
    results = tenant_a.scheduler.ReleaseMany(
        scheduler_pb2.ReleaseManyRequest(allocation_ids=ids)
    ).results

    assert [_code(r) for r in results] == [
        "OK",
        "PERMISSION_DENIED",
        "NOT_FOUND",
        "INVALID_ARGUMENT",
    ]
    assert results[0].allocation.id == mine.id
    assert results[0].allocation.state == RELEASED
    get = scheduler_pb2.GetAllocationRequest(allocation_id=theirs.id)
    assert tenant_b.scheduler.GetAllocation(get).allocation.state == PLACED
    # Releasing again is answered like a single Release (idempotent).
    again = tenant_a.scheduler.ReleaseMany(
        scheduler_pb2.ReleaseManyRequest(allocation_ids=[mine.id])
    )
    assert [_code(r) for r in again.results] == ["OK"]


def test_more_than_the_cap_fails_the_whole_call(tenant_a: Client, fleet_client: Client) -> None:
    too_many = [_fraction(f"x-{i}") for i in range(MAX_BATCH_ITEMS + 1)]
    with pytest.raises(grpc.RpcError) as info:
        tenant_a.scheduler.AllocateMany(scheduler_pb2.AllocateManyRequest(requests=too_many))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"the limit is {MAX_BATCH_ITEMS}" in str(info.value.details())
    ids = [f"alloc-{i}" for i in range(MAX_BATCH_ITEMS + 1)]
    with pytest.raises(grpc.RpcError) as info:
        tenant_a.scheduler.ReleaseMany(scheduler_pb2.ReleaseManyRequest(allocation_ids=ids))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _stored(fleet_client) == set()


def test_a_bad_wire_value_fails_the_whole_call(tenant_a: Client, fleet_client: Client) -> None:
    requests = [_fraction("ok"), _fraction("nul\x00")]
    with pytest.raises(grpc.RpcError) as info:
        tenant_a.scheduler.AllocateMany(scheduler_pb2.AllocateManyRequest(requests=requests))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "requests[1].request_id" in str(info.value.details())
    assert _stored(fleet_client) == set()


def test_a_viewer_may_not_batch(app: SchedulerApp, fleet_client: Client) -> None:
    viewer = Client.with_token(app, Role.VIEWER)
    try:
        with pytest.raises(grpc.RpcError) as info:
            viewer.scheduler.AllocateMany(
                scheduler_pb2.AllocateManyRequest(requests=[_fraction("v-0", tenant="team-a")])
            )
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as info:
            viewer.scheduler.ReleaseMany(scheduler_pb2.ReleaseManyRequest(allocation_ids=["x"]))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        viewer.close()
