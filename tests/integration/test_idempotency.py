"""The same (tenant, request id) returns the first answer, also after a restart."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from gpupool.v1 import scheduler_pb2, types_pb2
from scheduler.app import SchedulerApp
from scheduler.fleetfile import SimulatedNode
from tests.integration.conftest import Client, register_fleet


def _request(**overrides: object) -> scheduler_pb2.AllocateRequest:
    fields: dict[str, object] = {
        "tenant": "team-a",
        "request_id": "job-42",
        "fraction": types_pb2.FractionalGpu(milli_gpu=300, memory_mib=8000),
        "model": "llama-3-8b",
    }
    fields.update(overrides)
    return scheduler_pb2.AllocateRequest(**fields)  # type: ignore[arg-type]


def test_retry_returns_the_first_answer(fleet_client: Client) -> None:
    first = fleet_client.scheduler.Allocate(_request()).allocation
    second = fleet_client.scheduler.Allocate(_request()).allocation
    assert second.id == first.id and second.bindings == first.bindings
    other_tenant = fleet_client.scheduler.Allocate(_request(tenant="team-b")).allocation
    assert other_tenant.id != first.id


def test_same_id_with_another_body_is_already_exists(fleet_client: Client) -> None:
    fleet_client.scheduler.Allocate(_request())
    with pytest.raises(grpc.RpcError) as info:
        fleet_client.scheduler.Allocate(
            _request(fraction=types_pb2.FractionalGpu(milli_gpu=400, memory_mib=8000))
        )
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_first_answer_survives_a_scheduler_restart(
    start_app: Callable[[], SchedulerApp], mixed_fleet: list[SimulatedNode]
) -> None:
    first_app = start_app()
    client = Client.as_admin(first_app)
    register_fleet(client, mixed_fleet)
    first = client.scheduler.Allocate(_request()).allocation
    client.close()
    first_app.stop(grace=0.5)

    second_app = start_app()
    client = Client.as_admin(second_app)
    again = client.scheduler.Allocate(_request()).allocation
    assert again.id == first.id and again.bindings == first.bindings
    client.close()


def test_concurrent_retries_make_one_allocation(fleet_client: Client) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda _: fleet_client.scheduler.Allocate(_request()), range(32)))
    assert len({a.allocation.id for a in answers}) == 1
