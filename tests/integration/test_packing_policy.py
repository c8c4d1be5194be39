"""A scheduler started with --packing-policy fgd places over gRPC and learns its request mix."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gpupool.v1 import types_pb2
from scheduler.app import SchedulerApp
from scheduler.domain.clock import ManualClock
from scheduler.fleetfile import SimulatedNode
from tests.integration.conftest import Client, register_fleet
from tests.integration.test_allocate import PLACED, allocate
from tests.pki import scheduler_settings


@pytest.fixture
def fgd_client(
    clean_database: str, clock: ManualClock, mixed_fleet: list[SimulatedNode]
) -> Iterator[Client]:
    app = SchedulerApp(scheduler_settings(clean_database, packing_policy="fgd"), clock=clock)
    app.start()
    client = Client.as_admin(app)
    register_fleet(client, mixed_fleet)
    yield client
    client.close()
    app.stop(grace=0.5)


def test_fgd_fills_a_shared_gpu_before_opening_another(fgd_client: Client) -> None:
    big = types_pb2.FractionalGpu(milli_gpu=700, memory_mib=1024)
    small = types_pb2.FractionalGpu(milli_gpu=300, memory_mib=1024)
    first = allocate(fgd_client, "big", fraction=big, gpu_models=["H100-80GB"])
    second = allocate(fgd_client, "small", fraction=small, gpu_models=["H100-80GB"])
    whole = allocate(fgd_client, "w1", whole=types_pb2.WholeGpus(count=2))
    assert first.state == second.state == whole.state == PLACED
    # The mix has 700- and 300-milli requests: the 300 left beside the first is a fragment
    # for the 700s, so filling it shrinks fragmentation (score 53) where an idle GPU
    # would leave it unchanged (50).
    assert second.bindings[0].gpu_uuid == first.bindings[0].gpu_uuid
    assert len({b.node for b in whole.bindings}) == 1
