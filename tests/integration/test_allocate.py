"""Allocate, release, get and list over real gRPC against real PostgreSQL."""

from __future__ import annotations

import grpc
import pytest

from gpupool.v1 import admin_pb2, scheduler_pb2, types_pb2
from tests.integration.conftest import Client

PLACED = types_pb2.ALLOCATION_STATE_PLACED
PENDING = types_pb2.ALLOCATION_STATE_PENDING
RELEASED = types_pb2.ALLOCATION_STATE_RELEASED


def allocate(client: Client, request_id: str, **kwargs: object) -> types_pb2.Allocation:
    kwargs.setdefault("tenant", "team-a")
    request = scheduler_pb2.AllocateRequest(request_id=request_id, **kwargs)  # type: ignore[arg-type]
    return client.scheduler.Allocate(request).allocation


def test_whole_gpus_land_on_one_node(fleet_client: Client) -> None:
    allocation = allocate(
        fleet_client, "r1", whole=types_pb2.WholeGpus(count=4), gpu_models=["H100-80GB"]
    )
    assert allocation.state == PLACED
    assert len(allocation.bindings) == 4
    assert len({b.node for b in allocation.bindings}) == 1
    assert all(b.gpu_model == "H100-80GB" and b.milli_gpu == 1000 for b in allocation.bindings)
    assert len({b.gpu_uuid for b in allocation.bindings}) == 4


def test_fraction_claims_absolute_memory(fleet_client: Client) -> None:
    half_h100 = allocate(
        fleet_client,
        "half-h100",
        fraction=types_pb2.FractionalGpu(milli_gpu=500, memory_mib=40960),
        gpu_models=["H100-80GB"],
    )
    half_a100 = allocate(
        fleet_client,
        "half-a100",
        fraction=types_pb2.FractionalGpu(milli_gpu=500, memory_mib=20480),
        gpu_models=["A100-80GB"],
    )
    assert half_h100.bindings[0].memory_mib == 40960
    assert half_a100.bindings[0].memory_mib == 20480
    gpus = {g.uuid: g for g in fleet_client.admin.ListGpus(_list_gpus()).gpus}
    gpu = gpus[half_h100.bindings[0].gpu_uuid]
    assert (gpu.used_milli, gpu.used_memory_mib) == (500, 40960)
    assert gpu.free_memory_mib == gpu.memory_mib - 40960


def _list_gpus(node: str = "") -> admin_pb2.ListGpusRequest:
    return admin_pb2.ListGpusRequest(node=node)


def test_fractions_pack_best_fit_onto_one_gpu(fleet_client: Client) -> None:
    first = allocate(
        fleet_client, "f1", fraction=types_pb2.FractionalGpu(milli_gpu=250, memory_mib=10000)
    )
    second = allocate(
        fleet_client, "f2", fraction=types_pb2.FractionalGpu(milli_gpu=250, memory_mib=10000)
    )
    assert first.bindings[0].gpu_uuid == second.bindings[0].gpu_uuid


def test_mig_slice_uses_real_geometry(fleet_client: Client) -> None:
    first = allocate(fleet_client, "m1", mig=types_pb2.MigSlice(profile="4g.20gb"))
    second = allocate(fleet_client, "m2", mig=types_pb2.MigSlice(profile="3g.20gb"))
    assert first.state == PLACED and second.state == PLACED
    b1, b2 = first.bindings[0], second.bindings[0]
    assert b1.gpu_model == "A100-40GB" and b1.node == "a100-40-mig"
    assert (b1.mig_start, b1.mig_size) == (0, 4)
    # 4g + 3g share one GPU: 3g's valid starts are 0 and 4.
    if b1.gpu_uuid == b2.gpu_uuid:
        assert (b2.mig_start, b2.mig_size) == (4, 4)
    gpus = fleet_client.admin.ListGpus(_list_gpus("a100-40-mig")).gpus
    assert all(g.mig_enabled for g in gpus)
    assert any(g.mig_slot_map for g in gpus)


def test_mig_request_never_lands_on_a_full_gpu_and_whole_never_on_mig(fleet_client: Client) -> None:
    mig = allocate(fleet_client, "mig", mig=types_pb2.MigSlice(profile="1g.10gb"))
    # 1g.10gb exists on A100-80GB/H100 (not in MIG mode here) and as the
    # double-memory 1g on A100-40GB, which is in MIG mode.
    assert mig.bindings[0].node == "a100-40-mig"
    whole = allocate(
        fleet_client, "whole", whole=types_pb2.WholeGpus(count=4), gpu_models=["A100-40GB"]
    )
    assert whole.state == PENDING
    assert whole.unschedulable
    assert "unschedulable" in whole.pending_reasons[0].reason


def test_pending_with_reasons_then_placed_when_capacity_frees(fleet_client: Client) -> None:
    holders = [
        allocate(fleet_client, f"b{i}", whole=types_pb2.WholeGpus(count=8), gpu_models=["B200"])
        for i in range(2)
    ]
    assert holders[0].state == PLACED
    waiting = holders[1]
    assert waiting.state == PENDING
    assert not waiting.unschedulable
    assert waiting.pending_reasons, "a pending allocation says why it waits"
    shown = fleet_client.scheduler.GetAllocation(
        scheduler_pb2.GetAllocationRequest(allocation_id=waiting.id)
    ).allocation
    assert shown.pending_reasons == waiting.pending_reasons
    fleet_client.scheduler.Release(scheduler_pb2.ReleaseRequest(allocation_id=holders[0].id))
    placed = fleet_client.scheduler.GetAllocation(
        scheduler_pb2.GetAllocationRequest(allocation_id=waiting.id)
    ).allocation
    assert placed.state == PLACED
    assert [e.state for e in placed.events] == [PENDING, PLACED]


def test_pending_queue_is_placed_in_priority_then_arrival_order(fleet_client: Client) -> None:
    holder = allocate(fleet_client, "hold", whole=types_pb2.WholeGpus(count=8), gpu_models=["H200"])
    batch = allocate(
        fleet_client,
        "batch",
        whole=types_pb2.WholeGpus(count=8),
        gpu_models=["H200"],
        priority_class="batch",
    )
    normal = allocate(
        fleet_client, "normal", whole=types_pb2.WholeGpus(count=8), gpu_models=["H200"]
    )
    critical = allocate(
        fleet_client,
        "critical",
        whole=types_pb2.WholeGpus(count=8),
        gpu_models=["H200"],
        priority_class="critical",
    )
    assert {batch.state, normal.state, critical.state} == {PENDING}
    fleet_client.scheduler.Release(scheduler_pb2.ReleaseRequest(allocation_id=holder.id))

    def state(a: types_pb2.Allocation) -> int:
        return fleet_client.scheduler.GetAllocation(
            scheduler_pb2.GetAllocationRequest(allocation_id=a.id)
        ).allocation.state

    assert (state(critical), state(normal), state(batch)) == (PLACED, PENDING, PENDING)
    fleet_client.scheduler.Release(scheduler_pb2.ReleaseRequest(allocation_id=critical.id))
    assert (state(normal), state(batch)) == (PLACED, PENDING)


def test_unschedulable_request_pends_or_fails_when_asked_not_to_wait(fleet_client: Client) -> None:
    waiting = allocate(fleet_client, "huge", whole=types_pb2.WholeGpus(count=16))
    assert waiting.state == PENDING and waiting.unschedulable
    assert waiting.pending_reasons[0].reason.startswith("unschedulable:")
    with pytest.raises(grpc.RpcError) as info:
        allocate(fleet_client, "huge-now", whole=types_pb2.WholeGpus(count=16), no_wait=True)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "unschedulable" in (info.value.details() or "")
    _assert_not_stored(fleet_client, "huge-now")


def test_no_wait_when_full_is_resource_exhausted_and_stores_nothing(fleet_client: Client) -> None:
    allocate(fleet_client, "all-b200", whole=types_pb2.WholeGpus(count=8), gpu_models=["B200"])
    with pytest.raises(grpc.RpcError) as info:
        allocate(
            fleet_client,
            "one-more",
            whole=types_pb2.WholeGpus(count=8),
            gpu_models=["B200"],
            no_wait=True,
        )
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    _assert_not_stored(fleet_client, "one-more")


def _assert_not_stored(client: Client, request_id: str) -> None:
    listed = client.scheduler.ListAllocations(scheduler_pb2.ListAllocationsRequest(page_size=1000))
    assert request_id not in {a.request_id for a in listed.allocations}


def test_release_is_idempotent_and_frees_the_gpus(fleet_client: Client) -> None:
    allocation = allocate(
        fleet_client, "r", whole=types_pb2.WholeGpus(count=8), gpu_models=["B200"]
    )
    for _ in range(2):
        released = fleet_client.scheduler.Release(
            scheduler_pb2.ReleaseRequest(allocation_id=allocation.id)
        ).allocation
        assert released.state == RELEASED
    assert released.bindings == allocation.bindings, "bindings stay as history"
    again = allocate(fleet_client, "r2", whole=types_pb2.WholeGpus(count=8), gpu_models=["B200"])
    assert again.state == PLACED


def test_release_of_unknown_id_is_not_found(fleet_client: Client) -> None:
    with pytest.raises(grpc.RpcError) as info:
        fleet_client.scheduler.Release(scheduler_pb2.ReleaseRequest(allocation_id="a-nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        fleet_client.scheduler.GetAllocation(
            scheduler_pb2.GetAllocationRequest(allocation_id="a-nope")
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_list_filters_and_paginates(fleet_client: Client) -> None:
    for i in range(7):
        allocate(
            fleet_client,
            f"p{i}",
            tenant="team-b" if i % 2 else "team-a",
            fraction=types_pb2.FractionalGpu(milli_gpu=100, memory_mib=1000),
        )
    seen: list[str] = []
    token = ""
    while True:
        page = fleet_client.scheduler.ListAllocations(
            scheduler_pb2.ListAllocationsRequest(tenant="team-a", page_size=2, page_token=token)
        )
        seen.extend(a.request_id for a in page.allocations)
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == ["p0", "p2", "p4", "p6"]
    placed = fleet_client.scheduler.ListAllocations(
        scheduler_pb2.ListAllocationsRequest(state=PLACED, page_size=100)
    )
    assert len(placed.allocations) == 7
    node = placed.allocations[0].bindings[0].node
    on_node = fleet_client.scheduler.ListAllocations(
        scheduler_pb2.ListAllocationsRequest(node=node)
    ).allocations
    assert on_node and all(a.bindings[0].node == node for a in on_node)
