"""Fixtures for tests over real gRPC on loopback against real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gpupool.v1 import admin_pb2_grpc, agents_pb2_grpc, scheduler_pb2_grpc
from scheduler.app import SchedulerApp
from scheduler.domain.callers import Role
from scheduler.domain.clock import ManualClock
from scheduler.fleetfile import SimulatedNode, load_fleet
from scheduler.security.channels import ClientCredentials, open_channel
from scheduler.simfleet import register_request
from tests.pki import SessionPki, scheduler_settings, session_pki

ROOT = Path(__file__).resolve().parents[2]
MIXED_FLEET = ROOT / "deploy" / "fleets" / "mixed.yaml"


class Client:
    """Stubs of all three services over one real channel."""

    def __init__(self, address: str, credentials: ClientCredentials) -> None:
        self.address = address
        self.credentials = credentials
        self.channel = open_channel(address, credentials)
        self.scheduler = scheduler_pb2_grpc.SchedulerStub(self.channel)
        self.admin = admin_pb2_grpc.AdminStub(self.channel)
        self.agents = agents_pb2_grpc.AgentsStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def cli_args(self) -> list[str]:
        """Global `gpupool` options that reach this scheduler as this client."""
        if self.credentials.insecure:
            return ["--scheduler", self.address, "--insecure"]
        ca = str(session_pki().ca_cert)
        return ["--scheduler", self.address, "--ca-cert", ca, "--token", self.credentials.token]

    @classmethod
    def as_admin(cls, app: SchedulerApp) -> Client:
        """An admin (bearer token) on the app's API port."""
        return cls(app.address, session_pki().token(app, Role.ADMIN, name="test-admin"))

    @classmethod
    def as_agent(cls, app: SchedulerApp, node: str) -> Client:
        """Node's agent (client certificate) on the app's agent port."""
        return cls(app.agent_address, session_pki().agent(node))

    @classmethod
    def with_token(cls, app: SchedulerApp, role: Role, tenant: str = "") -> Client:
        return cls(app.address, session_pki().token(app, role, tenant))


def register_fleet(client: Client, nodes: list[SimulatedNode]) -> None:
    for node in nodes:
        client.agents.RegisterNode(register_request(node))


@pytest.fixture
def pki() -> SessionPki:
    return session_pki()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def start_app(clean_database: str, clock: ManualClock) -> Iterator[Callable[[], SchedulerApp]]:
    """Starts scheduler replicas on port 0 against the test database."""
    apps: list[SchedulerApp] = []

    def start() -> SchedulerApp:
        app = SchedulerApp(scheduler_settings(clean_database), clock=clock)
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
    c = Client.as_admin(app)
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
