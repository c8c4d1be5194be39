"""Batch work fills the B200 node; a critical request arrives. Exactly the
cheapest victims are asked to checkpoint; one acknowledges, one stays silent
until its deadline; the critical request is placed right after; both victims
are requeued and resume from their checkpoints when capacity returns."""

from __future__ import annotations

from gpupool.v1 import scheduler_pb2, types_pb2
from scheduler.app import SchedulerApp
from scheduler.domain.clock import ManualClock
from tests.integration.conftest import Client
from tests.integration.test_concurrency import assert_consistent

S = types_pb2


def _allocate(client: Client, request_id: str, count: int, priority: str) -> S.Allocation:
    request = scheduler_pb2.AllocateRequest(
        tenant="t",
        request_id=request_id,
        whole=S.WholeGpus(count=count),
        gpu_models=["B200"],
        priority_class=priority,
    )
    return client.scheduler.Allocate(request).allocation


def _get(client: Client, allocation_id: str) -> S.Allocation:
    request = scheduler_pb2.GetAllocationRequest(allocation_id=allocation_id)
    return client.scheduler.GetAllocation(request).allocation


def _checkpoint(client: Client, allocation_id: str, uri: str) -> None:
    request = scheduler_pb2.ReportCheckpointRequest(allocation_id=allocation_id, checkpoint_uri=uri)
    client.scheduler.ReportCheckpoint(request)


def test_critical_request_preempts_the_cheapest_batch_work(
    app: SchedulerApp, fleet_client: Client, clock: ManualClock, clean_database: str
) -> None:
    jobs = {name: _allocate(fleet_client, name, 2, "batch") for name in ("j1", "j2", "j3", "j4")}
    assert all(j.state == S.ALLOCATION_STATE_PLACED for j in jobs.values())
    clock.advance(1800)  # half an hour of training on all four
    _checkpoint(fleet_client, jobs["j1"].id, "s3://ckpt/j1-a")
    clock.advance(540)
    _checkpoint(fleet_client, jobs["j3"].id, "s3://ckpt/j3-a")
    clock.advance(60)
    _checkpoint(fleet_client, jobs["j2"].id, "s3://ckpt/j2-a")
    clock.advance(60)
    # Work since checkpoint: j1 10 min, j2 1 min, j3 2 min, j4 never (41 min).

    critical = _allocate(fleet_client, "serve", 4, "critical")
    assert critical.state == S.ALLOCATION_STATE_PENDING
    assert "preempting 2" in critical.message
    states = {name: _get(fleet_client, j.id) for name, j in jobs.items()}
    notified = {name for name, a in states.items() if a.state == S.ALLOCATION_STATE_PREEMPTING}
    assert notified == {"j2", "j3"}, "exactly the cheapest victims"
    notice = states["j2"].events[-1]
    assert notice.reason == "PREEMPTION_REQUESTED" and notice.deadline.ToSeconds() > 0
    assert states["j2"].preempted_for == critical.id

    # A second pass must not pick more victims while these checkpoint.
    app.allocator.place_pending()
    assert {
        n
        for n, j in jobs.items()
        if _get(fleet_client, j.id).state == S.ALLOCATION_STATE_PREEMPTING
    } == {"j2", "j3"}

    fleet_client.scheduler.AckPreemption(
        scheduler_pb2.AckPreemptionRequest(
            allocation_id=jobs["j2"].id, checkpoint_uri="s3://ckpt/j2-b"
        )
    )
    assert _get(fleet_client, critical.id).state == S.ALLOCATION_STATE_PENDING, "j3 still holds 2"
    clock.advance(61)  # past the batch class's 60 s grace
    assert app.preemption.run_once() == [jobs["j3"].id]

    placed = _get(fleet_client, critical.id)
    assert placed.state == S.ALLOCATION_STATE_PLACED
    assert len(placed.bindings) == 4
    j2, j3 = _get(fleet_client, jobs["j2"].id), _get(fleet_client, jobs["j3"].id)
    assert (j2.state, j3.state) == (S.ALLOCATION_STATE_PENDING, S.ALLOCATION_STATE_PENDING)
    assert "acknowledged" in j2.events[-1].message and "deadline" in j3.events[-1].message
    assert (j2.resume_from, j3.resume_from) == ("s3://ckpt/j2-b", "s3://ckpt/j3-a")
    assert_consistent(clean_database)

    # Capacity returns: both resume from their checkpoints.
    fleet_client.scheduler.Release(scheduler_pb2.ReleaseRequest(allocation_id=critical.id))
    for job, uri in ((jobs["j2"], "s3://ckpt/j2-b"), (jobs["j3"], "s3://ckpt/j3-a")):
        resumed = _get(fleet_client, job.id)
        assert resumed.state == S.ALLOCATION_STATE_PLACED
        assert resumed.resume_from == uri
        assert f"resume from {uri}" in resumed.events[-1].message
    assert_consistent(clean_database)


def test_equal_or_higher_priority_and_protected_work_is_never_a_victim(
    fleet_client: Client, clock: ManualClock
) -> None:
    held = _allocate(fleet_client, "normal-job", 8, "normal")
    clock.advance(60)  # inside normal's 300 s minimum runtime
    waiting = _allocate(fleet_client, "high-job", 8, "high")
    assert waiting.state == S.ALLOCATION_STATE_PENDING
    assert _get(fleet_client, held.id).state == S.ALLOCATION_STATE_PLACED
    peer = _allocate(fleet_client, "another-high", 1, "high")
    assert peer.state == S.ALLOCATION_STATE_PENDING
