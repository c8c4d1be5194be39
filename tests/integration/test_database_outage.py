"""PostgreSQL killed under a running replica: every RPC answers UNAVAILABLE
with an actionable message (no SQL, no address), gRPC health says
NOT_SERVING, and the replica recovers by itself once the database is back.

The test kills a PostgreSQL of its own (initdb in a temporary directory),
never the one the other tests share."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.support.chaos_postgres import KillablePostgres
from gpupool.v1 import admin_pb2, scheduler_pb2, types_pb2
from scheduler.app import SchedulerApp
from scheduler.fleetfile import load_fleet
from tests.e2e.conftest import wait_for
from tests.integration.conftest import MIXED_FLEET, Client, register_fleet
from tests.pki import scheduler_settings


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[KillablePostgres]:
    server = KillablePostgres(tmp_path / "pg")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def replica(postgres: KillablePostgres) -> Iterator[SchedulerApp]:
    app = SchedulerApp(scheduler_settings(postgres.url, run_loops=True))
    app.start()
    yield app
    app.stop(grace=0.5)


def _calls(client: Client, allocation_id: str) -> dict[str, Callable[[], object]]:
    """One call of each kind a user makes: reads and writes, unary and streaming."""
    s, a = client.scheduler, client.admin
    return {
        "Allocate": lambda: s.Allocate(
            scheduler_pb2.AllocateRequest(
                tenant="t", request_id="during", whole=types_pb2.WholeGpus(count=1)
            ),
            timeout=30,
        ),
        "Release": lambda: s.Release(
            scheduler_pb2.ReleaseRequest(allocation_id=allocation_id), timeout=30
        ),
        "GetAllocation": lambda: s.GetAllocation(
            scheduler_pb2.GetAllocationRequest(allocation_id=allocation_id), timeout=30
        ),
        "ListAllocations": lambda: s.ListAllocations(
            scheduler_pb2.ListAllocationsRequest(), timeout=30
        ),
        "ListNodes": lambda: a.ListNodes(admin_pb2.ListNodesRequest(), timeout=30),
        "ListGpus": lambda: a.ListGpus(admin_pb2.ListGpusRequest(), timeout=30),
        "WatchAllocation": lambda: next(
            iter(
                s.WatchAllocation(
                    scheduler_pb2.WatchAllocationRequest(allocation_id=allocation_id), timeout=30
                )
            )
        ),
    }


def _health(client: Client) -> int:
    stub = health_pb2_grpc.HealthStub(client.channel)
    return int(stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status)


def test_a_database_outage_is_unavailable_and_recovers(
    postgres: KillablePostgres, replica: SchedulerApp
) -> None:
    client = Client.as_admin(replica)
    register_fleet(client, load_fleet(MIXED_FLEET))
    held = client.scheduler.Allocate(
        scheduler_pb2.AllocateRequest(
            tenant="t", request_id="before", whole=types_pb2.WholeGpus(count=1)
        )
    ).allocation
    calls = _calls(client, held.id)

    postgres.kill9()
    for name, call in calls.items():
        with pytest.raises(grpc.RpcError) as info:
            call()
        error = info.value
        assert error.code() == grpc.StatusCode.UNAVAILABLE, f"{name}: {error.code()}"
        details = error.details() or ""
        assert "database is unavailable; retry" in details, f"{name}: {details}"
        for leak in ("postgres", str(postgres.port), "SELECT", "psycopg"):
            assert leak not in details, f"{name} leaks {leak!r}: {details}"
    wait_for(
        lambda: _health(client) == health_pb2.HealthCheckResponse.NOT_SERVING,
        what="health to say NOT_SERVING",
    )

    postgres.start()
    wait_for(
        lambda: _health(client) == health_pb2.HealthCheckResponse.SERVING,
        what="health to say SERVING again",
    )
    for name, call in calls.items():
        if name != "Release":
            call()  # each works again, nobody restarted anything
    released = calls["Release"]()
    assert isinstance(released, scheduler_pb2.ReleaseResponse)
    assert released.allocation.state == types_pb2.ALLOCATION_STATE_RELEASED
    client.close()
