"""Spot nodes: batch and throughput work prefers them, latency-critical work
avoids them, and an interruption notice moves everything off in time."""

from __future__ import annotations

from click.testing import CliRunner

from gpupool.v1 import admin_pb2, scheduler_pb2, types_pb2
from scheduler.cli.main import cli
from scheduler.fleetfile import parse_fleet
from scheduler.simfleet import register_request
from tests.integration.conftest import Client

S = types_pb2
SPOT_H100 = parse_fleet(
    {
        "nodes": [
            {
                "name": "h100-spot",
                "labels": {"spot": "true"},
                "gpus": {"model": "H100-80GB", "count": 8},
            }
        ]
    }
)[0]


def _allocate(
    client: Client, request_id: str, workload: S.WorkloadClass, priority: str = "batch"
) -> S.Allocation:
    request = scheduler_pb2.AllocateRequest(
        tenant="t",
        request_id=request_id,
        whole=S.WholeGpus(count=4),
        gpu_models=["H100-80GB"],
        workload_class=workload,
        priority_class=priority,
    )
    return client.scheduler.Allocate(request).allocation


def test_batch_prefers_spot_and_latency_critical_avoids_it(fleet_client: Client) -> None:
    fleet_client.agents.RegisterNode(register_request(SPOT_H100))
    batch = _allocate(fleet_client, "b", S.WORKLOAD_CLASS_BATCH)
    assert batch.bindings[0].node == "h100-spot"
    serving = _allocate(fleet_client, "s", S.WORKLOAD_CLASS_LATENCY_CRITICAL, "high")
    assert serving.bindings[0].node != "h100-spot"
    # A preference never makes work wait: with the spot node full, batch goes elsewhere.
    _allocate(fleet_client, "b2", S.WORKLOAD_CLASS_BATCH)
    third = _allocate(fleet_client, "b3", S.WORKLOAD_CLASS_BATCH)
    assert third.state == S.ALLOCATION_STATE_PLACED and third.bindings[0].node != "h100-spot"


def test_interruption_notice_checkpoints_and_moves_everything(fleet_client: Client) -> None:
    fleet_client.agents.RegisterNode(register_request(SPOT_H100))
    job = _allocate(fleet_client, "train", S.WORKLOAD_CLASS_BATCH)
    assert job.bindings[0].node == "h100-spot"
    result = CliRunner().invoke(
        cli, [*fleet_client.cli_args(), "node", "interrupt", "h100-spot", "--in", "2m"]
    )
    assert result.exit_code == 0, result.output
    assert "cordoned; 1 allocation(s) asked to checkpoint" in result.output
    notice = fleet_client.scheduler.GetAllocation(
        scheduler_pb2.GetAllocationRequest(allocation_id=job.id)
    ).allocation
    assert notice.state == S.ALLOCATION_STATE_PREEMPTING
    assert notice.events[-1].deadline.ToSeconds() - notice.events[-1].at.ToSeconds() == 120
    fleet_client.scheduler.AckPreemption(
        scheduler_pb2.AckPreemptionRequest(allocation_id=job.id, checkpoint_uri="s3://ckpt/spot")
    )
    moved = fleet_client.scheduler.GetAllocation(
        scheduler_pb2.GetAllocationRequest(allocation_id=job.id)
    ).allocation
    assert moved.state == S.ALLOCATION_STATE_PLACED
    assert moved.bindings[0].node != "h100-spot" and moved.resume_from == "s3://ckpt/spot"
    node = fleet_client.admin.GetNode(admin_pb2.GetNodeRequest(name="h100-spot")).node
    assert node.state == S.NODE_STATE_CORDONED
