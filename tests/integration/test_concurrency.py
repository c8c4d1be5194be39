"""Many clients and two scheduler processes competing for the last capacity:
never over-committed, never a lost or duplicated allocation."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from sqlalchemy import create_engine, text

from gpupool.v1 import scheduler_pb2, types_pb2
from scheduler.domain.callers import Role
from scheduler.fleetfile import SimulatedNode, load_fleet
from scheduler.security.channels import channel_ready
from tests.integration.conftest import MIXED_FLEET, Client, register_fleet
from tests.pki import session_pki

PLACED = types_pb2.ALLOCATION_STATE_PLACED
PENDING = types_pb2.ALLOCATION_STATE_PENDING


def _request(i: int) -> scheduler_pb2.AllocateRequest:
    """A mix of whole, fraction and MIG requests aimed at a small part of the fleet."""
    kind = i % 3
    if kind == 0:
        return scheduler_pb2.AllocateRequest(
            tenant="t", request_id=f"r{i}", whole=types_pb2.WholeGpus(count=2), gpu_models=["H200"]
        )
    if kind == 1:
        return scheduler_pb2.AllocateRequest(
            tenant="t",
            request_id=f"r{i}",
            fraction=types_pb2.FractionalGpu(milli_gpu=300, memory_mib=15000),
            gpu_models=["L40S"],
        )
    return scheduler_pb2.AllocateRequest(
        tenant="t", request_id=f"r{i}", mig=types_pb2.MigSlice(profile="2g.10gb")
    )


def assert_consistent(database_url: str) -> None:
    """Counters equal the sum of live claims, stay within each GPU, and every
    placed allocation holds claims while no other does."""
    engine = create_engine(database_url)
    with engine.connect() as conn:
        mismatched = conn.execute(
            text(
                "SELECT g.id FROM gpus g LEFT JOIN gpu_claims c ON c.gpu_id = g.id "
                "GROUP BY g.id HAVING g.used_milli <> COALESCE(SUM(c.milli), 0) "
                "OR g.used_memory_mib <> COALESCE(SUM(c.memory_mib), 0) "
                "OR g.mig_used_compute <> COALESCE(SUM(c.mig_compute), 0) "
                "OR g.used_milli > 1000 OR g.used_memory_mib > g.memory_mib"
            )
        ).all()
        assert mismatched == []
        orphan_claims = conn.execute(
            text(
                "SELECT count(*) FROM gpu_claims c JOIN allocations a ON a.id = c.allocation_id "
                "WHERE a.state NOT IN ('placed', 'running', 'preempting')"
            )
        ).scalar_one()
        assert orphan_claims == 0
        unclaimed = conn.execute(
            text(
                "SELECT count(*) FROM allocations a WHERE a.state = 'placed' "
                "AND NOT EXISTS (SELECT 1 FROM gpu_claims c WHERE c.allocation_id = a.id)"
            )
        ).scalar_one()
        assert unclaimed == 0
        duplicates = conn.execute(
            text("SELECT count(*) FROM allocations GROUP BY tenant, request_id HAVING count(*) > 1")
        ).all()
        assert duplicates == []
    engine.dispose()


def test_many_clients_compete_for_the_last_capacity(
    fleet_client: Client, clean_database: str
) -> None:
    # The H200 node holds 4 x 2 GPUs, the L40S node 4 x 3 fractions, the
    # A100-40GB node 12 x 2g.10gb: 28 fit of the 90 asked for.
    with ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(pool.map(lambda i: fleet_client.scheduler.Allocate(_request(i)), range(90)))
    states = [a.allocation.state for a in answers]
    assert states.count(PLACED) == 4 + 12 + 12
    assert states.count(PENDING) == 90 - 28
    assert_consistent(clean_database)

    placed = [a.allocation.id for a in answers if a.allocation.state == PLACED]
    with ThreadPoolExecutor(max_workers=24) as pool:
        list(
            pool.map(
                lambda i: fleet_client.scheduler.Release(
                    scheduler_pb2.ReleaseRequest(allocation_id=i)
                ),
                placed,
            )
        )
    listed = fleet_client.scheduler.ListAllocations(
        scheduler_pb2.ListAllocationsRequest(state=PLACED, page_size=1000)
    )
    assert len(listed.allocations) == 28, "the queue refilled the freed capacity"
    assert_consistent(clean_database)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def two_schedulers(clean_database: str) -> Iterator[list[Client]]:
    """Two scheduler processes (`gpupool serve`) sharing one database."""
    processes: list[subprocess.Popen[bytes]] = []
    clients: list[Client] = []
    env = {**os.environ, "GPUPOOL_DATABASE_URL": clean_database}
    try:
        for _ in range(2):
            address = f"127.0.0.1:{_free_port()}"
            command = [
                sys.executable, "-m", "scheduler.cli.main", "serve",
                "--listen", address, "--agent-listen", "",
                *session_pki().server_args(),
            ]  # fmt: skip
            processes.append(
                subprocess.Popen(
                    command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
            credentials = session_pki().token_in(clean_database, Role.ADMIN)
            assert channel_ready(address, credentials, 60), "scheduler process did not come up"
            clients.append(Client(address, credentials))
        yield clients
    finally:
        for client in clients:
            client.close()
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def test_two_scheduler_processes_never_double_book(
    two_schedulers: list[Client], clean_database: str
) -> None:
    nodes: list[SimulatedNode] = load_fleet(MIXED_FLEET)
    register_fleet(two_schedulers[0], nodes)

    def allocate(i: int) -> scheduler_pb2.AllocateResponse:
        client = two_schedulers[i % 2]
        for _ in range(5):
            try:
                return client.scheduler.Allocate(_request(i))
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.ABORTED:
                    raise
        raise AssertionError("kept losing the race")

    with ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(pool.map(allocate, range(120)))
    ids = {a.allocation.id for a in answers}
    assert len(ids) == 120, "one allocation per request id"
    assert_consistent(clean_database)
    states = [a.allocation.state for a in answers]
    assert states.count(PLACED) <= 28

    # Retries on the other replica return the same allocation.
    again = [two_schedulers[(i + 1) % 2].scheduler.Allocate(_request(i)) for i in range(0, 120, 7)]
    assert all(a.allocation.id in ids for a in again)

    placed = [a.allocation.id for a in answers if a.allocation.state == PLACED]
    for n, allocation_id in enumerate(placed):
        two_schedulers[n % 2].scheduler.Release(
            scheduler_pb2.ReleaseRequest(allocation_id=allocation_id)
        )
    assert_consistent(clean_database)
