"""The checkpoint hook protocol: PREEMPTION_REQUESTED with a deadline,
AckPreemption or the deadline, requeue and resume from the checkpoint."""

from __future__ import annotations

import grpc
import pytest

from gpupool.v1 import admin_pb2, scheduler_pb2, types_pb2
from scheduler.app import SchedulerApp
from scheduler.domain.clock import ManualClock
from tests.integration.conftest import Client

S = types_pb2


def _batch_job(client: Client, request_id: str, count: int = 8) -> types_pb2.Allocation:
    request = scheduler_pb2.AllocateRequest(
        tenant="t",
        request_id=request_id,
        whole=S.WholeGpus(count=count),
        gpu_models=["B200"],
        priority_class="batch",
    )
    return client.scheduler.Allocate(request).allocation


def _get(client: Client, allocation_id: str) -> types_pb2.Allocation:
    request = scheduler_pb2.GetAllocationRequest(allocation_id=allocation_id)
    return client.scheduler.GetAllocation(request).allocation


def test_acknowledged_preemption_requeues_and_resumes_from_the_checkpoint(
    fleet_client: Client,
) -> None:
    job = _batch_job(fleet_client, "train")
    fleet_client.scheduler.ReportCheckpoint(
        scheduler_pb2.ReportCheckpointRequest(
            allocation_id=job.id, checkpoint_uri="s3://ckpt/step-100"
        )
    )
    notice = fleet_client.admin.Preempt(
        admin_pb2.PreemptRequest(allocation_id=job.id, grace_seconds=90)
    )
    assert notice.allocation.state == S.ALLOCATION_STATE_PREEMPTING
    requested = notice.allocation.events[-1]
    assert requested.reason == "PREEMPTION_REQUESTED"
    assert requested.deadline.ToSeconds() - requested.at.ToSeconds() == 90

    stream = fleet_client.scheduler.WatchAllocation(
        scheduler_pb2.WatchAllocationRequest(allocation_id=job.id), timeout=10
    )
    first = next(iter(stream))
    assert first.event.reason == "PREEMPTION_REQUESTED", "the holder learns of it on its watch"
    stream.cancel()  # type: ignore[no-untyped-call]

    fleet_client.scheduler.AckPreemption(
        scheduler_pb2.AckPreemptionRequest(
            allocation_id=job.id, checkpoint_uri="s3://ckpt/step-120"
        )
    )
    after = _get(fleet_client, job.id)
    # Nothing else wanted the GPUs, so the queue placed it straight back.
    assert after.state == S.ALLOCATION_STATE_PLACED
    assert after.resume_from == "s3://ckpt/step-120"
    assert after.preemption_count == 1
    assert [e.reason for e in after.events] == [
        "PLACED",
        "PREEMPTION_REQUESTED",
        "REVOKED",
        "PLACED",
    ]
    assert "acknowledged" in after.events[2].message
    assert "resume from s3://ckpt/step-120" in after.events[3].message


def test_silent_victim_is_revoked_at_its_deadline_with_its_last_checkpoint(
    app: SchedulerApp, fleet_client: Client, clock: ManualClock
) -> None:
    job = _batch_job(fleet_client, "silent")
    fleet_client.scheduler.ReportCheckpoint(
        scheduler_pb2.ReportCheckpointRequest(allocation_id=job.id, checkpoint_uri="s3://ckpt/7")
    )
    fleet_client.admin.Preempt(admin_pb2.PreemptRequest(allocation_id=job.id, grace_seconds=30))
    clock.advance(29)
    assert app.preemption.run_once() == []
    clock.advance(2)
    assert app.preemption.run_once() == [job.id]
    after = _get(fleet_client, job.id)
    assert after.resume_from == "s3://ckpt/7"
    assert [e.reason for e in after.events][-2:] == ["REVOKED", "PLACED"]
    assert "deadline" in after.events[-2].message


def test_protocol_errors(fleet_client: Client) -> None:
    job = _batch_job(fleet_client, "j", count=2)
    with pytest.raises(grpc.RpcError) as info:
        fleet_client.scheduler.AckPreemption(
            scheduler_pb2.AckPreemptionRequest(allocation_id=job.id)
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as info:
        fleet_client.scheduler.ReportCheckpoint(
            scheduler_pb2.ReportCheckpointRequest(allocation_id=job.id)
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fleet_client.scheduler.Release(scheduler_pb2.ReleaseRequest(allocation_id=job.id))
    with pytest.raises(grpc.RpcError) as info:
        fleet_client.admin.Preempt(admin_pb2.PreemptRequest(allocation_id=job.id))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as info:
        fleet_client.admin.Preempt(admin_pb2.PreemptRequest(allocation_id="a-none"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
