"""Parallel layouts through gRPC: multi-node gangs, all or nothing, under concurrency."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from gpupool.v1 import scheduler_pb2, types_pb2
from scheduler.app import SchedulerApp
from scheduler.domain.clock import ManualClock
from tests.integration.conftest import Client
from tests.integration.test_concurrency import assert_consistent

PLACED = types_pb2.ALLOCATION_STATE_PLACED


def gang(request_id: str, no_wait: bool = True, **degrees: int) -> scheduler_pb2.AllocateRequest:
    return scheduler_pb2.AllocateRequest(
        tenant="team-a",
        request_id=request_id,
        layout=types_pb2.ParallelLayout(**degrees),
        gpu_models=["H100-80GB"],
        no_wait=no_wait,
    )


def test_tp8_pp2_spans_two_nodes_in_rank_order(fleet_client: Client) -> None:
    allocation = fleet_client.scheduler.Allocate(gang("g1", tp=8, pp=2)).allocation
    assert allocation.state == PLACED
    assert allocation.whole.count == 16
    assert (allocation.layout.tp, allocation.layout.pp) == (8, 2)
    assert [b.rank for b in allocation.bindings] == list(range(16))
    stage_nodes = [{b.node for b in allocation.bindings[s * 8 : (s + 1) * 8]} for s in range(2)]
    assert all(len(nodes) == 1 for nodes in stage_nodes)  # each TP group inside one node
    assert stage_nodes[0] != stage_nodes[1]
    # Both nodes list it: the second node's agent must see it in its desired state.
    for nodes in stage_nodes:
        listed = fleet_client.scheduler.ListAllocations(
            scheduler_pb2.ListAllocationsRequest(node=next(iter(nodes)))
        ).allocations
        assert [a.id for a in listed] == [allocation.id]
    fleet_client.scheduler.Release(scheduler_pb2.ReleaseRequest(allocation_id=allocation.id))
    again = fleet_client.scheduler.Allocate(gang("g2", tp=8, pp=2)).allocation
    assert again.state == PLACED  # both nodes were freed


def test_desired_state_of_every_node_holds_the_gang(
    fleet_client: Client, app: SchedulerApp
) -> None:
    allocation = fleet_client.scheduler.Allocate(gang("g1", tp=8, pp=2)).allocation
    for node in {b.node for b in allocation.bindings}:
        desired = app.agents.desired_state(node)
        assert [a.id for a in desired.allocations] == [allocation.id]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            scheduler_pb2.AllocateRequest(
                tenant="t",
                request_id="r",
                layout=types_pb2.ParallelLayout(tp=2),
                fraction=types_pb2.FractionalGpu(milli_gpu=500, memory_mib=1000),
            ),
            "needs whole GPUs",
        ),
        (
            scheduler_pb2.AllocateRequest(
                tenant="t",
                request_id="r",
                layout=types_pb2.ParallelLayout(tp=2, pp=2),
                whole=types_pb2.WholeGpus(count=8),
            ),
            "differs from the layout's world size",
        ),
        (gang("r", tp=4, ep=6), "must divide or be a multiple of layout.tp"),
    ],
)
def test_bad_layouts_are_invalid_argument(
    fleet_client: Client, request_: scheduler_pb2.AllocateRequest, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        fleet_client.scheduler.Allocate(request_)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (raised.value.details() or "")


def test_a_layout_no_fleet_can_hold_is_failed_precondition(fleet_client: Client) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        fleet_client.scheduler.Allocate(gang("big", tp=16))
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "inside one NVLink domain" in (raised.value.details() or "")


def test_a_waiting_gang_says_why(fleet_client: Client) -> None:
    fleet_client.scheduler.Allocate(gang("first", tp=8, pp=2))
    waiting = fleet_client.scheduler.Allocate(gang("second", no_wait=False, tp=4, pp=2)).allocation
    assert waiting.state == types_pb2.ALLOCATION_STATE_PENDING
    assert waiting.pending_reasons[0].plugin == "GangLayout"
    assert not waiting.bindings


def test_concurrent_gangs_are_all_or_nothing(fleet_client: Client, clean_database: str) -> None:
    """16 H100s make room for exactly two 8-GPU gangs; 12 clients race for them."""

    def ask(i: int) -> str:
        try:
            fleet_client.scheduler.Allocate(gang(f"race-{i}", tp=4, pp=2))
            return "placed"
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            return "exhausted"

    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = list(pool.map(ask, range(12)))
    assert outcomes.count("placed") == 2
    listed = fleet_client.scheduler.ListAllocations(
        scheduler_pb2.ListAllocationsRequest(tenant="team-a", page_size=100)
    ).allocations
    placed = [a for a in listed if a.state == PLACED]
    assert len(placed) == 2
    assert all(len(a.bindings) == 8 for a in placed)
    assert not {b.gpu_uuid for b in placed[0].bindings} & {b.gpu_uuid for b in placed[1].bindings}
    assert_consistent(clean_database)


def test_a_model_spec_alone_gets_an_automatic_layout(fleet_client: Client) -> None:
    request = scheduler_pb2.AllocateRequest(
        tenant="team-a",
        request_id="auto",
        model_spec=types_pb2.ModelSpec(name="llama-3.1-70b", dtype="fp16"),
        workload_class=types_pb2.WORKLOAD_CLASS_THROUGHPUT,
    )
    allocation = fleet_client.scheduler.Allocate(request).allocation
    assert allocation.state == PLACED
    # Throughput prefers A100-80GB; 141 GB of FP16 weights need two of them.
    assert allocation.layout_choice.gpu_model == "A100-80GB"
    assert allocation.layout_choice.tp == 2
    assert allocation.layout.tp == 2 and allocation.whole.count == 2
    assert {b.gpu_model for b in allocation.bindings} == {"A100-80GB"}
    assert allocation.model == "llama-3.1-70b"
    assert allocation.model_spec.dtype == "fp16"
    assert any("fits at tp=2" in line for line in allocation.layout_choice.explanation)
    # A retry with the same body gets the same allocation back.
    again = fleet_client.scheduler.Allocate(request).allocation
    assert again.id == allocation.id


def test_a_model_no_gpu_can_hold_is_failed_precondition(fleet_client: Client) -> None:
    request = scheduler_pb2.AllocateRequest(
        tenant="team-a",
        request_id="huge",
        model_spec=types_pb2.ModelSpec(params_billion=5000),
        workload_class=types_pb2.WORKLOAD_CLASS_LATENCY_CRITICAL,
    )
    with pytest.raises(grpc.RpcError) as raised:
        fleet_client.scheduler.Allocate(request)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "can hold a 5000B-parameter model" in (raised.value.details() or "")


def test_an_unknown_model_is_invalid_argument(fleet_client: Client) -> None:
    request = scheduler_pb2.AllocateRequest(
        tenant="team-a", request_id="x", model_spec=types_pb2.ModelSpec(name="gpt-9")
    )
    with pytest.raises(grpc.RpcError) as raised:
        fleet_client.scheduler.Allocate(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not in the model catalogue" in (raised.value.details() or "")


def test_a_critical_gang_preempts_batch_work_on_two_nodes(
    fleet_client: Client, clock: ManualClock
) -> None:
    batch = [
        fleet_client.scheduler.Allocate(
            scheduler_pb2.AllocateRequest(
                tenant="team-b",
                request_id=f"batch-{i}",
                whole=types_pb2.WholeGpus(count=6),
                gpu_models=["H100-80GB"],
                priority_class="batch",
            )
        ).allocation
        for i in range(2)
    ]
    assert {a.bindings[0].node for a in batch} == {"h100-sxm-0", "h100-sxm-1"}
    clock.advance(600)  # past the batch class's minimum runtime
    request = gang("critical-gang", no_wait=False, tp=8, pp=2)
    request.priority_class = "critical"
    waiting = fleet_client.scheduler.Allocate(request).allocation
    assert waiting.state == types_pb2.ALLOCATION_STATE_PENDING
    assert "preempting 2 lower-priority allocation(s)" in waiting.message
    for victim in batch:
        got = fleet_client.scheduler.GetAllocation(
            scheduler_pb2.GetAllocationRequest(allocation_id=victim.id)
        ).allocation
        assert got.state == types_pb2.ALLOCATION_STATE_PREEMPTING
        assert got.preempted_for == waiting.id
    for victim in batch:
        fleet_client.scheduler.AckPreemption(
            scheduler_pb2.AckPreemptionRequest(allocation_id=victim.id, checkpoint_uri="s3://ck")
        )
    placed = wait_for_state(fleet_client, waiting.id, PLACED)
    assert {b.node for b in placed.bindings} == {"h100-sxm-0", "h100-sxm-1"}


def wait_for_state(client: Client, allocation_id: str, state: int) -> types_pb2.Allocation:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = client.scheduler.GetAllocation(
            scheduler_pb2.GetAllocationRequest(allocation_id=allocation_id)
        ).allocation
        if got.state == state:
            return got
        time.sleep(0.05)
    raise AssertionError(f"{allocation_id} never reached state {state}: {got.message}")
