"""`gpupool node delete`: a stopped node leaves the fleet (nodes, GPUs,
placement) while its allocations' history stays; live work is refused unless
--force, which requeues it as failover does; a hello brings the node back.
Driven through gRPC and the CLI, with a manual clock for reachability."""

from __future__ import annotations

import json
from collections.abc import Callable

import grpc
import pytest

from gpupool.v1 import admin_pb2, agents_pb2, scheduler_pb2, types_pb2
from scheduler.api import converters
from scheduler.app import SchedulerApp
from scheduler.domain.callers import Role
from scheduler.domain.clock import ManualClock
from scheduler.fleetfile import SimulatedNode
from scheduler.simfleet import register_request
from tests.integration.conftest import Client
from tests.integration.test_cli import gpupool

PLACED = types_pb2.ALLOCATION_STATE_PLACED
PENDING = types_pb2.ALLOCATION_STATE_PENDING
FAILED = types_pb2.ALLOCATION_STATE_FAILED
CODE = grpc.StatusCode


def _refused(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def _delete(client: Client, name: str, force: bool = False) -> admin_pb2.DeleteNodeResponse:
    request = admin_pb2.DeleteNodeRequest(name=name, force=force)
    return client.admin.DeleteNode(request)  # type: ignore[no-any-return]


def _silence(app: SchedulerApp, client: Client, clock: ManualClock, node: str) -> None:
    """The node's agent stopped: past the heartbeat timeout it is unreachable
    (and still within the failover grace, so its work has not moved yet)."""
    app.leader.run_once()
    clock.advance(app.settings.heartbeat_timeout_s + 1)
    for other in client.admin.ListNodes(admin_pb2.ListNodesRequest()).nodes:
        if other.name != node:
            app.heartbeats.record(other.name, clock.now())
    app.heartbeats.run_once()
    assert node in app.liveness.run_once().unreachable


def _node_names(client: Client) -> set[str]:
    return {n.name for n in client.admin.ListNodes(admin_pb2.ListNodesRequest()).nodes}


def _get(client: Client, allocation_id: str) -> types_pb2.Allocation:
    request = scheduler_pb2.GetAllocationRequest(allocation_id=allocation_id)
    return client.scheduler.GetAllocation(request).allocation


def _gang(request_id: str) -> scheduler_pb2.AllocateRequest:
    return scheduler_pb2.AllocateRequest(
        tenant="t",
        request_id=request_id,
        layout=types_pb2.ParallelLayout(tp=8, pp=2),
        gpu_models=["H100-80GB"],
    )


def _node(fleet: list[SimulatedNode], name: str) -> SimulatedNode:
    return next(n for n in fleet if n.name == name)


def test_unknown_node_is_not_found(fleet_client: Client) -> None:
    error = _refused(lambda: _delete(fleet_client, "no-such-node"))
    assert error.code() == CODE.NOT_FOUND and "no-such-node" in (error.details() or "")
    assert _refused(lambda: _delete(fleet_client, "")).code() == CODE.INVALID_ARGUMENT


def test_a_reachable_or_connected_node_is_refused(
    app: SchedulerApp,
    fleet_client: Client,
    clock: ManualClock,
    mixed_fleet: list[SimulatedNode],
) -> None:
    error = _refused(lambda: _delete(fleet_client, "l4"))
    assert error.code() == CODE.FAILED_PRECONDITION
    assert "stop its agent first" in (error.details() or "")
    assert "reachable" in (error.details() or "")

    # Silent in the database, but its agent still holds a stream here.
    hello = agents_pb2.AgentHello(node=register_request(_node(mixed_fleet, "l4")))
    session = app.agents.connect(converters.agent_hello(hello))
    try:
        _silence(app, fleet_client, clock, "l4")
        error = _refused(lambda: _delete(fleet_client, "l4", force=True))
        assert error.code() == CODE.FAILED_PRECONDITION
        assert "connected" in (error.details() or "")
    finally:
        app.agents.disconnect(session)
    assert _delete(fleet_client, "l4").name == "l4"
    assert "l4" not in _node_names(fleet_client)


def test_viewers_may_not_delete_nodes(app: SchedulerApp, fleet_client: Client) -> None:
    viewer = Client.with_token(app, Role.VIEWER)
    try:
        assert _refused(lambda: _delete(viewer, "l4")).code() == CODE.PERMISSION_DENIED
    finally:
        viewer.close()


def test_a_gang_rank_on_the_node_blocks_it_until_force_requeues_the_gang(
    app: SchedulerApp,
    fleet_client: Client,
    clock: ManualClock,
    mixed_fleet: list[SimulatedNode],
) -> None:
    gang = fleet_client.scheduler.Allocate(_gang("gang")).allocation
    assert gang.state == PLACED
    rank0 = gang.bindings[0].node
    second = gang.bindings[8].node
    assert rank0 != second, "the deleted node holds only the second stage"
    _silence(app, fleet_client, clock, second)

    error = _refused(lambda: _delete(fleet_client, second))
    assert error.code() == CODE.FAILED_PRECONDITION
    assert gang.id in (error.details() or "") and "--force" in (error.details() or "")
    assert second in _node_names(fleet_client), "a refused delete changes nothing"

    response = _delete(fleet_client, second, force=True)
    assert [a.id for a in response.requeued] == [gang.id]
    assert response.requeued[0].state == PENDING, "16 H100s are no longer anywhere"
    after = _get(fleet_client, gang.id)
    assert after.state == PENDING
    assert any(f"node {second} was deleted" in e.message for e in after.events)
    assert not after.bindings, "a pending allocation shows no stale bindings"

    # Gone from the node and GPU lists, and from placement.
    assert second not in _node_names(fleet_client)
    listed = fleet_client.admin.ListGpus(admin_pb2.ListGpusRequest()).gpus
    assert second not in {g.node for g in listed}
    for call in (
        lambda: fleet_client.admin.GetNode(admin_pb2.GetNodeRequest(name=second)),
        lambda: fleet_client.admin.ListGpus(admin_pb2.ListGpusRequest(node=second)),
        lambda: _delete(fleet_client, second),
    ):
        assert _refused(call).code() == CODE.NOT_FOUND
    eight = scheduler_pb2.AllocateRequest(
        tenant="u", request_id="eight", whole=types_pb2.WholeGpus(count=8), no_wait=True
    )
    eight.gpu_models.append("H100-80GB")
    placed = fleet_client.scheduler.Allocate(eight).allocation
    assert placed.state == PLACED and {b.node for b in placed.bindings} == {rank0}
    fleet_client.scheduler.Release(scheduler_pb2.ReleaseRequest(allocation_id=placed.id))

    # Its agent says hello again: the node is back, active, and the gang fits again.
    hello = agents_pb2.AgentHello(node=register_request(_node(mixed_fleet, second)))
    session = app.agents.connect(converters.agent_hello(hello))
    try:
        assert second in _node_names(fleet_client)
        node = fleet_client.admin.GetNode(admin_pb2.GetNodeRequest(name=second)).node
        assert node.state == types_pb2.NODE_STATE_READY and len(node.gpus) == 8
        app.allocator.place_pending()
        back = _get(fleet_client, gang.id)
        assert back.state == PLACED and {b.node for b in back.bindings} == {rank0, second}
    finally:
        app.agents.disconnect(session)


def test_force_fails_what_asks_to_fail(
    app: SchedulerApp, fleet_client: Client, clock: ManualClock
) -> None:
    request = scheduler_pb2.AllocateRequest(
        tenant="t",
        request_id="fragile",
        whole=types_pb2.WholeGpus(count=1),
        gpu_models=["H200"],
        on_failure=types_pb2.FAILURE_POLICY_FAIL,
    )
    fragile = fleet_client.scheduler.Allocate(request).allocation
    _silence(app, fleet_client, clock, "h200")
    response = _delete(fleet_client, "h200", force=True)
    assert [(a.id, a.state) for a in response.requeued] == [(fragile.id, FAILED)]
    assert _get(fleet_client, fragile.id).state == FAILED


def test_cli_node_delete(app: SchedulerApp, fleet_client: Client, clock: ManualClock) -> None:
    code, out = gpupool(
        fleet_client, "-o", "json", "allocate", "--tenant", "t", "--request-id", "old",
        "--whole", "1", "--gpu-model", "L4",
    )  # fmt: skip
    old = json.loads(out)
    assert code == 0 and old["state"] == "placed"
    code, out = gpupool(fleet_client, "node", "delete", "l4")
    assert code != 0 and "stop its agent first" in out

    _silence(app, fleet_client, clock, "l4")
    code, out = gpupool(fleet_client, "node", "delete", "l4")
    assert code != 0 and old["id"] in out and "--force" in out
    code, out = gpupool(fleet_client, "node", "delete", "--force", "l4")
    assert code == 0 and "l4: deleted" in out and old["id"] in out

    code, out = gpupool(fleet_client, "-o", "json", "nodes")
    names = {n["name"] for n in json.loads(out)}
    assert code == 0 and "l4" not in names and "h200" in names
    code, out = gpupool(fleet_client, "-o", "json", "gpus")
    assert code == 0 and "l4" not in {g["node"] for g in json.loads(out)}
    code, out = gpupool(fleet_client, "allocation", "show", old["id"])
    assert code == 0 and "l4 was deleted" in out
    code, out = gpupool(fleet_client, "node", "delete", "l4")
    assert code != 0 and "no node named 'l4'" in out


def test_a_host_back_under_another_name_takes_its_gpus(
    app: SchedulerApp, fleet_client: Client, clock: ManualClock, mixed_fleet: list[SimulatedNode]
) -> None:
    _silence(app, fleet_client, clock, "l4")
    _delete(fleet_client, "l4")
    request = register_request(_node(mixed_fleet, "l4"))
    request.name = request.hostname = "l4-reimaged"
    fleet_client.agents.RegisterNode(request)
    listed = fleet_client.admin.ListGpus(admin_pb2.ListGpusRequest(node="l4-reimaged")).gpus
    assert sorted(g.uuid for g in listed) == sorted(g.uuid for g in request.gpus)
    assert "l4" not in _node_names(fleet_client)


def test_a_deleted_nodes_warm_models_are_forgotten(
    app: SchedulerApp, fleet_client: Client, clock: ManualClock
) -> None:
    warm = types_pb2.ModelResidency(model="mistral-7b", tier=types_pb2.RESIDENCY_TIER_HOST_RAM)
    beat = agents_pb2.HeartbeatRequest(node="l40s", residency=[warm], residency_reported=True)
    fleet_client.agents.Heartbeat(beat)

    def warm_on() -> set[str]:
        models = fleet_client.admin.ListModels(admin_pb2.ListModelsRequest()).models
        return {p.node for m in models for p in m.placements}

    assert "l40s" in warm_on()
    _silence(app, fleet_client, clock, "l40s")
    _delete(fleet_client, "l40s")
    assert "l40s" not in warm_on()
