"""WatchAllocation tells the holder every state change."""

from __future__ import annotations

import threading

from gpupool.v1 import scheduler_pb2, types_pb2
from tests.integration.conftest import Client

PENDING = types_pb2.ALLOCATION_STATE_PENDING
PLACED = types_pb2.ALLOCATION_STATE_PLACED
RELEASED = types_pb2.ALLOCATION_STATE_RELEASED


def _whole_b200(client: Client, request_id: str) -> types_pb2.Allocation:
    return client.scheduler.Allocate(
        scheduler_pb2.AllocateRequest(
            tenant="t",
            request_id=request_id,
            whole=types_pb2.WholeGpus(count=8),
            gpu_models=["B200"],
        )
    ).allocation


def test_watch_streams_pending_placed_released(fleet_client: Client) -> None:
    holder = _whole_b200(fleet_client, "holder")
    waiting = _whole_b200(fleet_client, "waiting")
    assert waiting.state == PENDING
    stream = fleet_client.scheduler.WatchAllocation(
        scheduler_pb2.WatchAllocationRequest(allocation_id=waiting.id), timeout=30
    )
    seen: list[tuple[int, int]] = []
    first_seen = threading.Event()

    def read() -> None:
        for update in stream:
            seen.append((update.event.seq, update.allocation.state))
            first_seen.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert first_seen.wait(10), "the current state comes first"
    fleet_client.scheduler.Release(scheduler_pb2.ReleaseRequest(allocation_id=holder.id))
    fleet_client.scheduler.Release(scheduler_pb2.ReleaseRequest(allocation_id=waiting.id))
    reader.join(timeout=20)
    assert not reader.is_alive(), "the stream ends after a terminal state"
    assert seen == [(1, PENDING), (2, PLACED), (3, RELEASED)]


def test_watch_of_a_released_allocation_sends_it_once_and_ends(fleet_client: Client) -> None:
    allocation = _whole_b200(fleet_client, "gone")
    fleet_client.scheduler.Release(scheduler_pb2.ReleaseRequest(allocation_id=allocation.id))
    updates = list(
        fleet_client.scheduler.WatchAllocation(
            scheduler_pb2.WatchAllocationRequest(allocation_id=allocation.id), timeout=10
        )
    )
    assert [u.allocation.state for u in updates] == [RELEASED]
