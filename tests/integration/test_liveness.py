"""Heartbeat timeouts, failover after a grace period, GPU health and its
consequences — driven by run_once() and a manual clock, without sleeping."""

from __future__ import annotations

from gpupool.v1 import admin_pb2, scheduler_pb2, types_pb2
from scheduler.app import SchedulerApp
from scheduler.domain.clock import ManualClock
from scheduler.services.health import GpuHealthReport
from tests.integration.conftest import Client

PLACED = types_pb2.ALLOCATION_STATE_PLACED
PENDING = types_pb2.ALLOCATION_STATE_PENDING


def _allocate(client: Client, request_id: str, model: str, count: int) -> types_pb2.Allocation:
    request = scheduler_pb2.AllocateRequest(
        tenant="t",
        request_id=request_id,
        whole=types_pb2.WholeGpus(count=count),
        gpu_models=[model],
    )
    return client.scheduler.Allocate(request).allocation


def _get(client: Client, allocation: types_pb2.Allocation) -> types_pb2.Allocation:
    request = scheduler_pb2.GetAllocationRequest(allocation_id=allocation.id)
    return client.scheduler.GetAllocation(request).allocation


def _node_state(client: Client, name: str) -> int:
    return client.admin.GetNode(admin_pb2.GetNodeRequest(name=name)).node.state


def _beat_all_but(app: SchedulerApp, client: Client, silent: str) -> None:
    for node in client.admin.ListNodes(admin_pb2.ListNodesRequest()).nodes:
        if node.name != silent:
            app.heartbeats.record(node.name, app.clock.now())
    app.heartbeats.run_once()


def test_silent_node_turns_unreachable_then_its_work_moves(
    app: SchedulerApp, fleet_client: Client, clock: ManualClock
) -> None:
    app.leader.run_once()
    moving = _allocate(fleet_client, "moving", "H100-80GB", 4)
    node = moving.bindings[0].node
    clock.advance(app.settings.heartbeat_timeout_s + 1)
    _beat_all_but(app, fleet_client, node)
    result = app.liveness.run_once()
    assert result.unreachable == [node]
    assert _node_state(fleet_client, node) == types_pb2.NODE_STATE_UNREACHABLE
    assert _get(fleet_client, moving).state == PLACED, "nothing moves within the grace period"

    clock.advance(app.settings.failover_grace_s + 1)
    _beat_all_but(app, fleet_client, node)
    result = app.liveness.run_once()
    assert result.moved == {node: 1}
    after = _get(fleet_client, moving)
    assert after.state == PLACED and after.bindings[0].node != node
    assert "unreachable" in after.events[-2].message

    # The node returns: reachable again, and it takes work again.
    app.heartbeats.record(node, clock.now())
    assert app.heartbeats.run_once() == [node]
    assert _node_state(fleet_client, node) == types_pb2.NODE_STATE_READY


def test_unhealthy_gpu_takes_no_work_and_its_allocation_moves(
    app: SchedulerApp, fleet_client: Client
) -> None:
    victim = _allocate(fleet_client, "victim", "B200", 8)
    uuid = victim.bindings[0].gpu_uuid
    app.health.apply(
        "b200", [GpuHealthReport(uuid, "unhealthy", ("Xid 79: GPU fell off the bus",))]
    )
    after = _get(fleet_client, victim)
    assert after.state == PENDING, "8 B200s are no longer free anywhere"
    assert "Xid 79" in after.events[-1].message
    gpu = next(
        g
        for g in fleet_client.admin.ListGpus(admin_pb2.ListGpusRequest(node="b200")).gpus
        if g.uuid == uuid
    )
    assert gpu.health == types_pb2.GPU_HEALTH_UNHEALTHY
    assert list(gpu.health_reasons) == ["Xid 79: GPU fell off the bus"]
    seven = _allocate(fleet_client, "seven", "B200", 7)
    assert seven.state == PLACED and uuid not in {b.gpu_uuid for b in seven.bindings}

    # Recovery lets the waiting work in once the seven are released.
    app.health.apply("b200", [GpuHealthReport(uuid, "healthy")])
    fleet_client.scheduler.Release(scheduler_pb2.ReleaseRequest(allocation_id=seven.id))
    assert _get(fleet_client, victim).state == PLACED


def test_degraded_gpu_keeps_its_work(app: SchedulerApp, fleet_client: Client) -> None:
    held = _allocate(fleet_client, "held", "H200", 1)
    uuid = held.bindings[0].gpu_uuid
    app.health.apply(
        "h200", [GpuHealthReport(uuid, "degraded", ("temperature 86 C, 4 C below slowdown",))]
    )
    assert _get(fleet_client, held).state == PLACED


def _gang_across_two_nodes(client: Client, request_id: str) -> types_pb2.Allocation:
    """tp=8 x pp=2 on two 8-GPU H100 nodes: rank 0 on one, ranks 8-15 on the other."""
    request = scheduler_pb2.AllocateRequest(
        tenant="t",
        request_id=request_id,
        layout=types_pb2.ParallelLayout(tp=8, pp=2),
        gpu_models=["H100-80GB"],
        on_failure=types_pb2.FAILURE_POLICY_FAIL,
    )
    gang = client.scheduler.Allocate(request).allocation
    assert gang.state == PLACED
    assert gang.bindings[0].node != gang.bindings[8].node
    return gang


def test_a_gang_fails_over_when_a_node_other_than_rank_0s_goes_silent(
    app: SchedulerApp, fleet_client: Client, clock: ManualClock
) -> None:
    app.leader.run_once()
    gang = _gang_across_two_nodes(fleet_client, "gang")
    second = gang.bindings[8].node
    clock.advance(app.settings.heartbeat_timeout_s + 1)
    _beat_all_but(app, fleet_client, second)
    assert app.liveness.run_once().unreachable == [second]
    clock.advance(app.settings.failover_grace_s + 1)
    _beat_all_but(app, fleet_client, second)
    assert app.liveness.run_once().moved == {second: 1}
    assert _get(fleet_client, gang).state == types_pb2.ALLOCATION_STATE_FAILED


def test_draining_a_gangs_second_node_moves_the_gang(
    app: SchedulerApp, fleet_client: Client
) -> None:
    app.leader.run_once()
    gang = _gang_across_two_nodes(fleet_client, "drained")
    second = gang.bindings[8].node
    fleet_client.admin.DrainNode(admin_pb2.NodeActionRequest(name=second))
    app.liveness.run_once()
    assert _get(fleet_client, gang).state == types_pb2.ALLOCATION_STATE_FAILED


def test_after_a_database_outage_silence_is_judged_only_a_timeout_later(
    app: SchedulerApp, fleet_client: Client, clock: ManualClock
) -> None:
    """No heartbeat could be stored during the outage: every node looks
    silent when the database answers again, and none is judged until a whole
    timeout of heartbeats has had the chance to land."""
    app.leader.run_once()
    held = _allocate(fleet_client, "held", "H100-80GB", 4)
    node = held.bindings[0].node
    app.liveness._outage = True  # what a failed run_once leaves behind
    clock.advance(app.settings.heartbeat_timeout_s + app.settings.failover_grace_s + 1)
    assert app.liveness.run_once().unreachable == [], "the database just came back"
    clock.advance(app.settings.heartbeat_timeout_s / 2)
    assert app.liveness.run_once().unreachable == []
    _beat_all_but(app, fleet_client, silent="")  # heartbeats land again
    clock.advance(app.settings.heartbeat_timeout_s / 2 + 0.1)
    assert app.liveness.run_once().unreachable == [], "every node beat since"
    assert _get(fleet_client, held).state == PLACED
    assert _node_state(fleet_client, node) == types_pb2.NODE_STATE_READY
