"""Agents register and heartbeat; admins cordon, uncordon and drain."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gpupool.v1 import admin_pb2, agents_pb2, scheduler_pb2, types_pb2
from scheduler.fleetfile import SimulatedNode
from scheduler.simfleet import register_request
from tests.integration.conftest import Client


def _whole(client: Client, request_id: str, model: str, count: int = 8) -> types_pb2.Allocation:
    return client.scheduler.Allocate(
        scheduler_pb2.AllocateRequest(
            tenant="t",
            request_id=request_id,
            whole=types_pb2.WholeGpus(count=count),
            gpu_models=[model],
        )
    ).allocation


def test_registered_fleet_is_listed_with_models_and_mig_layout(fleet_client: Client) -> None:
    nodes = {n.name: n for n in fleet_client.admin.ListNodes(admin_pb2.ListNodesRequest()).nodes}
    assert len(nodes) == 9
    assert nodes["h200"].gpu_models == ["H200"] and nodes["h200"].gpu_count == 8
    assert all(n.state == types_pb2.NODE_STATE_READY for n in nodes.values())
    node = fleet_client.admin.GetNode(admin_pb2.GetNodeRequest(name="a100-40-mig")).node
    assert [g.mig_slot_map for g in node.gpus] == ["........"] * 4
    l4 = fleet_client.admin.GetNode(admin_pb2.GetNodeRequest(name="l4")).node
    assert [list(g.nvlink_peers) for g in l4.gpus] == [[], []], "PCIe parts have no NVLink"
    h100 = fleet_client.admin.GetNode(admin_pb2.GetNodeRequest(name="h100-sxm-0")).node
    assert sorted(h100.gpus[0].nvlink_peers) == [1, 2, 3, 4, 5, 6, 7]


def test_re_registering_is_idempotent(
    fleet_client: Client, mixed_fleet: list[SimulatedNode]
) -> None:
    fleet_client.agents.RegisterNode(register_request(mixed_fleet[0]))
    gpus = fleet_client.admin.ListGpus(admin_pb2.ListGpusRequest()).gpus
    assert len(gpus) == 58


def test_mig_mode_cannot_flip_under_live_allocations(
    fleet_client: Client, mixed_fleet: list[SimulatedNode]
) -> None:
    mig_node = next(n for n in mixed_fleet if n.name == "a100-40-mig")
    fleet_client.scheduler.Allocate(
        scheduler_pb2.AllocateRequest(
            tenant="t", request_id="m", mig=types_pb2.MigSlice(profile="7g.40gb")
        )
    )
    request = register_request(mig_node)
    for gpu in request.gpus:
        gpu.mig_enabled = False
    with pytest.raises(grpc.RpcError) as info:
        fleet_client.agents.RegisterNode(request)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    gpus = fleet_client.admin.ListGpus(admin_pb2.ListGpusRequest(node="a100-40-mig")).gpus
    assert all(g.mig_enabled for g in gpus), "the refused registration changed nothing"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.gpus[0].__setattr__("model", "Voodoo 5"), "not in the catalogue"),
        (lambda r: r.gpus[1].__setattr__("uuid", r.gpus[0].uuid), "must be unique"),
        (lambda r: r.__setattr__("name", ""), "node name"),
    ],
    ids=["unknown model", "duplicate uuid", "no name"],
)
def test_bad_registration_is_invalid_argument(
    client: Client, mixed_fleet: list[SimulatedNode], change: object, message: str
) -> None:
    request = register_request(mixed_fleet[0])
    change(request)  # type: ignore[operator]
    with pytest.raises(grpc.RpcError) as info:
        client.agents.RegisterNode(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (info.value.details() or "")
    assert list(client.admin.ListNodes(admin_pb2.ListNodesRequest()).nodes) == []


def test_nvml_names_map_to_the_catalogue(client: Client, mixed_fleet: list[SimulatedNode]) -> None:
    request = register_request(mixed_fleet[0])
    for gpu in request.gpus:
        gpu.model = "NVIDIA H100 80GB HBM3"
    node = client.agents.RegisterNode(request).node
    assert {g.model for g in node.gpus} == {"H100-80GB"}


def test_heartbeat(fleet_client: Client) -> None:
    reply = fleet_client.agents.Heartbeat(agents_pb2.HeartbeatRequest(node="l4"))
    assert reply.state == types_pb2.NODE_STATE_READY
    with pytest.raises(grpc.RpcError) as info:
        fleet_client.agents.Heartbeat(agents_pb2.HeartbeatRequest(node="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_cordon_keeps_new_work_off_and_uncordon_lets_it_back(fleet_client: Client) -> None:
    fleet_client.admin.CordonNode(admin_pb2.NodeActionRequest(name="b200"))
    waiting = _whole(fleet_client, "w", "B200")
    assert waiting.state == types_pb2.ALLOCATION_STATE_PENDING
    assert any(r.plugin == "NodeSchedulable" for r in waiting.pending_reasons)
    node = fleet_client.admin.UncordonNode(admin_pb2.NodeActionRequest(name="b200")).node
    assert node.state == types_pb2.NODE_STATE_READY
    placed = fleet_client.scheduler.GetAllocation(
        scheduler_pb2.GetAllocationRequest(allocation_id=waiting.id)
    ).allocation
    assert placed.state == types_pb2.ALLOCATION_STATE_PLACED, "uncordon runs the queue"


def test_drain_moves_work_elsewhere_and_shows_drained_when_empty(fleet_client: Client) -> None:
    moved = _whole(fleet_client, "moved", "H100-80GB", count=4)
    node = moved.bindings[0].node
    kept_out = fleet_client.scheduler.Allocate(
        scheduler_pb2.AllocateRequest(
            tenant="t",
            request_id="fail-me",
            whole=types_pb2.WholeGpus(count=4),
            gpu_models=["H100-80GB"],
            on_failure=types_pb2.FAILURE_POLICY_FAIL,
        )
    ).allocation
    # FGD rates filling the node and taking half the idle one alike; ties go by name.
    assert kept_out.bindings[0].node == node, "packed onto the same node"
    drained = fleet_client.admin.DrainNode(admin_pb2.NodeActionRequest(name=node)).node
    assert drained.state == types_pb2.NODE_STATE_DRAINED

    def get(a: types_pb2.Allocation) -> types_pb2.Allocation:
        request = scheduler_pb2.GetAllocationRequest(allocation_id=a.id)
        return fleet_client.scheduler.GetAllocation(request).allocation

    after = get(moved)
    assert after.state == types_pb2.ALLOCATION_STATE_PLACED
    assert after.bindings[0].node != node, "requeued and placed on the other H100 node"
    assert [e.state for e in after.events][-2:] == [
        types_pb2.ALLOCATION_STATE_PENDING,
        types_pb2.ALLOCATION_STATE_PLACED,
    ]
    assert "draining" in after.events[-2].message
    assert get(kept_out).state == types_pb2.ALLOCATION_STATE_FAILED
    assert (
        _whole(fleet_client, "new", "H100-80GB", count=8).state
        == types_pb2.ALLOCATION_STATE_PENDING
    )


def test_node_actions_on_unknown_node_are_not_found(client: Client) -> None:
    for call in (client.admin.CordonNode, client.admin.DrainNode, client.admin.UncordonNode):
        with pytest.raises(grpc.RpcError) as info:
            call(admin_pb2.NodeActionRequest(name="ghost"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        client.admin.ListGpus(admin_pb2.ListGpusRequest(node="ghost"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_checking_and_catalogue(client: Client) -> None:
    health = health_pb2_grpc.HealthStub(client.channel)
    for service in ("", "gpupool.v1.Scheduler", "gpupool.v1.Admin", "gpupool.v1.Agents"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    models = {m.name: m for m in client.admin.GetCatalogue(admin_pb2.GetCatalogueRequest()).models}
    assert {"A100-40GB", "A100-80GB", "H100-80GB", "H100-NVL", "H200", "B200", "L40S", "L4"} <= set(
        models
    )
    h200 = {p.name: p for p in models["H200"].mig_profiles}
    assert (h200["3g.71gb"].memory_slices, list(h200["3g.71gb"].valid_starts)) == (4, [0, 4])
    assert not models["L4"].mig_capable
