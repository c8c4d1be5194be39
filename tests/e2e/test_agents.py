"""Simulated agents as real processes over real gRPC and real PostgreSQL."""

from __future__ import annotations

import grpc
import pytest

from gpupool.v1 import admin_pb2, scheduler_pb2, types_pb2
from tests.e2e.conftest import Cluster, wait_for
from tests.integration.conftest import Client
from tests.integration.test_concurrency import assert_consistent

NODES = ["h100-sxm-0", "h100-sxm-1", "b200"]
PLACED = types_pb2.ALLOCATION_STATE_PLACED


def _start(cluster: Cluster, nodes: list[str] = NODES) -> None:
    for node in nodes:
        cluster.start_agent(node)
    wait_for(lambda: cluster.connected(nodes), what=f"agents {nodes} to connect")


def _allocate(client: Client, request_id: str, model: str, count: int) -> types_pb2.Allocation:
    request = scheduler_pb2.AllocateRequest(
        tenant="t",
        request_id=request_id,
        whole=types_pb2.WholeGpus(count=count),
        gpu_models=[model],
    )
    return client.scheduler.Allocate(request).allocation


def _get(client: Client, allocation_id: str) -> types_pb2.Allocation:
    request = scheduler_pb2.GetAllocationRequest(allocation_id=allocation_id)
    return client.scheduler.GetAllocation(request).allocation


def _gpu(client: Client, node: str, index: int) -> types_pb2.Gpu:
    gpus = client.admin.ListGpus(admin_pb2.ListGpusRequest(node=node)).gpus
    return next(g for g in gpus if g.index == index)


def _node_state(client: Client, node: str) -> int:
    return client.admin.GetNode(admin_pb2.GetNodeRequest(name=node)).node.state


def test_agents_register_with_their_gpus_and_get_desired_state(
    cluster: Cluster, client: Client
) -> None:
    _start(cluster)
    node = client.admin.GetNode(admin_pb2.GetNodeRequest(name="h100-sxm-0")).node
    assert node.gpu_count == 8 and node.state == types_pb2.NODE_STATE_READY
    assert sorted(node.gpus[0].nvlink_peers) == [1, 2, 3, 4, 5, 6, 7]
    allocation = _allocate(client, "a", "B200", 2)
    wait_for(
        lambda: allocation.id in cluster.running("b200"), what="the agent to run the allocation"
    )
    client.scheduler.Release(scheduler_pb2.ReleaseRequest(allocation_id=allocation.id))
    wait_for(lambda: allocation.id not in cluster.running("b200"), what="the agent to stop it")


def test_killed_agent_makes_its_node_unreachable_and_its_work_moves(
    cluster: Cluster, client: Client
) -> None:
    _start(cluster)
    moving = _allocate(client, "moving", "H100-80GB", 4)
    node = moving.bindings[0].node
    cluster.kill_agent(node)
    wait_for(
        lambda: _node_state(client, node) == types_pb2.NODE_STATE_UNREACHABLE, what="unreachable"
    )
    wait_for(
        lambda: (
            _get(client, moving.id).bindings[0].node not in ("", node)
            and _get(client, moving.id).state == PLACED
        ),
        what="failover to the other H100 node",
    )
    assert_consistent(cluster.database_url)


def test_xid_79_makes_a_gpu_unhealthy_and_xid_13_does_not(cluster: Cluster, client: Client) -> None:
    _start(cluster, ["b200"])
    client.admin.InjectFault(admin_pb2.InjectFaultRequest(node="b200", gpu_index=3, fault="xid=79"))
    client.admin.InjectFault(admin_pb2.InjectFaultRequest(node="b200", gpu_index=5, fault="xid=13"))
    wait_for(
        lambda: _gpu(client, "b200", 3).health == types_pb2.GPU_HEALTH_UNHEALTHY, what="unhealthy"
    )
    assert any("Xid 79" in r for r in _gpu(client, "b200", 3).health_reasons)
    assert _gpu(client, "b200", 5).health == types_pb2.GPU_HEALTH_HEALTHY
    eight = _allocate(client, "eight", "B200", 8)
    assert eight.state == types_pb2.ALLOCATION_STATE_PENDING, "nothing new lands on GPU 3"
    seven = _allocate(client, "seven", "B200", 7)
    assert seven.state == PLACED and 3 not in {b.gpu_index for b in seven.bindings}
    client.admin.InjectFault(admin_pb2.InjectFaultRequest(node="b200", gpu_index=3, clear=True))
    wait_for(
        lambda: _gpu(client, "b200", 3).health == types_pb2.GPU_HEALTH_HEALTHY, what="recovery"
    )


def test_faults_only_reach_simulated_connected_agents(cluster: Cluster, client: Client) -> None:
    fault = admin_pb2.InjectFaultRequest(node="b200", gpu_index=0, fault="lost")
    with pytest.raises(grpc.RpcError) as info:
        client.admin.InjectFault(fault)
    # No agent ever registered it: no such node (not "no agent connected here").
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no node named 'b200'" in (info.value.details() or "")
    _start(cluster, ["b200"])
    cluster.kill_agent("b200")
    # The stream's end reaches the scheduler's event loop a moment after the kill.
    wait_for(lambda: not cluster.connected(["b200"]), what="the scheduler to see the stream end")
    with pytest.raises(grpc.RpcError) as info:
        client.admin.InjectFault(fault)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION, "known, not connected"
    assert "connected to no scheduler replica" in (info.value.details() or "")


def test_restarted_agent_reconciles_without_duplicates(cluster: Cluster, client: Client) -> None:
    _start(cluster)
    stays = _allocate(client, "stays", "B200", 4)
    leaves = _allocate(client, "leaves", "B200", 2)
    wait_for(lambda: {stays.id, leaves.id} <= cluster.running("b200"), what="agent to run both")
    cluster.kill_agent("b200")
    client.scheduler.Release(scheduler_pb2.ReleaseRequest(allocation_id=leaves.id))
    assert leaves.id in cluster.running("b200"), "the dead agent still lists it"
    cluster.start_agent("b200")
    wait_for(lambda: cluster.connected(["b200"]), what="the agent to reconnect")
    wait_for(lambda: cluster.running("b200") == {stays.id}, what="stale work to be stopped")
    assert _get(client, stays.id).state == PLACED
    assert_consistent(cluster.database_url)


def test_scheduler_restart_loses_nothing_and_agents_reconnect(
    cluster: Cluster, client: Client
) -> None:
    _start(cluster)
    held = _allocate(client, "held", "H100-80GB", 8)
    cluster.stop_scheduler()
    cluster.start_scheduler()
    wait_for(lambda: cluster.connected(NODES), what="agents to reconnect")
    assert cluster.app is not None
    again = Client.as_admin(cluster.app)
    try:
        assert _get(again, held.id).state == PLACED
        assert _get(again, held.id).bindings == held.bindings
        assert {n.state for n in again.admin.ListNodes(admin_pb2.ListNodesRequest()).nodes} == {
            types_pb2.NODE_STATE_READY
        }
    finally:
        again.close()
    assert_consistent(cluster.database_url)
