"""Fixtures for tests over real gRPC on loopback against real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from gpupool.v1 import admin_pb2_grpc, agents_pb2_grpc, scheduler_pb2_grpc
from scheduler.app import SchedulerApp, SchedulerSettings
from scheduler.domain.clock import ManualClock
from scheduler.fleetfile import SimulatedNode, load_fleet
from scheduler.simfleet import register_request

ROOT = Path(__file__).resolve().parents[2]
MIXED_FLEET = ROOT / "deploy" / "fleets" / "mixed.yaml"


class Client:
    """Stubs of all three services over one real channel."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = grpc.insecure_channel(address)
        self.scheduler = scheduler_pb2_grpc.SchedulerStub(self.channel)
        self.admin = admin_pb2_grpc.AdminStub(self.channel)
        self.agents = agents_pb2_grpc.AgentsStub(self.channel)

    def close(self) -> None:
        self.channel.close()


def register_fleet(client: Client, nodes: list[SimulatedNode]) -> None:
    for node in nodes:
        client.agents.RegisterNode(register_request(node))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def start_app(clean_database: str, clock: ManualClock) -> Iterator[Callable[[], SchedulerApp]]:
    """Starts scheduler replicas on port 0 against the test database."""
    apps: list[SchedulerApp] = []

    def start() -> SchedulerApp:
        settings = SchedulerSettings(
            database_url=clean_database, listen="127.0.0.1:0", run_loops=False
        )
        app = SchedulerApp(settings, clock=clock)
        app.start()
        apps.append(app)
        return app

    yield start
    for app in reversed(apps):
        app.stop(grace=0.5)


@pytest.fixture
def app(start_app: Callable[[], SchedulerApp]) -> SchedulerApp:
    return start_app()


@pytest.fixture
def client(app: SchedulerApp) -> Iterator[Client]:
    c = Client(app.address)
    yield c
    c.close()


@pytest.fixture
def mixed_fleet() -> list[SimulatedNode]:
    return load_fleet(MIXED_FLEET)


@pytest.fixture
def fleet_client(client: Client, mixed_fleet: list[SimulatedNode]) -> Client:
    """A client of a scheduler that knows the mixed fleet."""
    register_fleet(client, mixed_fleet)
    return client
