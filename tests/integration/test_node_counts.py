"""A gang counts on every node it spans: `gpupool nodes` ALLOCS, `node show`
and drained/draining read the allocations' `nodes`, not rank 0's `node`."""

from __future__ import annotations

from gpupool.v1 import admin_pb2, types_pb2
from tests.integration.conftest import Client
from tests.integration.test_allocate import allocate


def test_two_node_gang_counts_on_both_nodes_and_keeps_the_second_draining(
    fleet_client: Client,
) -> None:
    gang = allocate(
        fleet_client,
        "gang",
        layout=types_pb2.ParallelLayout(tp=8, pp=2),
        gpu_models=["H100-80GB"],
    )
    assert gang.state == types_pb2.ALLOCATION_STATE_PLACED
    spanned = sorted({b.node for b in gang.bindings})
    assert len(spanned) == 2
    nodes = {n.name: n for n in fleet_client.admin.ListNodes(admin_pb2.ListNodesRequest()).nodes}
    for name in spanned:
        assert nodes[name].allocation_count == 1, name
        assert nodes[name].free_gpus == 0
        assert len(nodes[name].gpus) == 8, "ListNodes carries each node's GPUs"
        shown = fleet_client.admin.GetNode(admin_pb2.GetNodeRequest(name=name)).node
        assert shown.allocation_count == 1
    second = spanned[1]
    drained = fleet_client.admin.DrainNode(admin_pb2.NodeActionRequest(name=second)).node
    # Draining moved the gang off both nodes (all or nothing): nothing is left there.
    moved = fleet_client.admin.GetNode(admin_pb2.GetNodeRequest(name=second)).node
    assert drained.state in (types_pb2.NODE_STATE_DRAINING, types_pb2.NODE_STATE_DRAINED)
    assert moved.allocation_count == 0 and moved.state == types_pb2.NODE_STATE_DRAINED
