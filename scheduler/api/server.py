"""The gRPC servers: the three services plus health checking and reflection,
on an API port (TLS, tokens; a sync server) and an agent port (mutual TLS;
a grpc.aio server, api/aio_server.py)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gpupool.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    agents_pb2,
    agents_pb2_grpc,
    cost_pb2,
    cost_pb2_grpc,
    deployments_pb2,
    deployments_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
)
from scheduler.api.aio_server import AgentPortServer
from scheduler.api.cost_servicer import CostServicer
from scheduler.api.deployments_servicer import DeploymentsServicer
from scheduler.api.interceptor import ApiInterceptor
from scheduler.api.router_servicer import RouterServicer
from scheduler.api.servicers import AdminServicer, AgentsServicer, SchedulerServicer
from scheduler.routing.service import RoutingService
from scheduler.security.channels import ServerTls, add_ports
from scheduler.services.agents import AgentHub
from scheduler.services.allocations import AllocationService
from scheduler.services.audit import AuditLog
from scheduler.services.cost import CostService
from scheduler.services.deployments import DeploymentService
from scheduler.services.fleet import FleetService
from scheduler.services.fleet_view import FleetView
from scheduler.services.model_residency import ModelService
from scheduler.services.tenants import TenantService
from scheduler.services.tokens import TokenService
from scheduler.services.worker_logs import LogRelay
from scheduler.services.workers import WorkerService

SERVICE_NAMES = (
    scheduler_pb2.DESCRIPTOR.services_by_name["Scheduler"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
    agents_pb2.DESCRIPTOR.services_by_name["Agents"].full_name,
    deployments_pb2.DESCRIPTOR.services_by_name["Deployments"].full_name,
    cost_pb2.DESCRIPTOR.services_by_name["Cost"].full_name,
    router_pb2.DESCRIPTOR.services_by_name["Router"].full_name,
)


@dataclass(frozen=True)
class Listeners:
    api: str
    agents: str  # "" for none of its own
    tls: ServerTls | None  # None: plaintext (--insecure)


# Agents ping every 30 s to find a replica that vanished without closing its
# connection; both servers allow it rather than answer "too many pings".
# Requests keep gRPC's 4 MiB cap: nothing a caller sends needs more.
SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.so_reuseport", 0),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_ping_strikes", 0),
]


@dataclass
class Servers:
    """The sync server on the API port and the aio server on the agent port
    (None when agents share the API port: then their streams hold threads of
    the sync server, which is for small setups only)."""

    api: grpc.Server
    agents: AgentPortServer | None
    ports: tuple[int, int]
    health: health.HealthServicer

    def start(self) -> None:
        if self.agents is not None:
            self.agents.start()
        self.api.start()

    def set_serving(self, serving: bool) -> None:
        set_serving(self.health, serving)
        if self.agents is not None:
            self.agents.set_serving(serving)

    def enter_graceful_shutdown(self) -> None:
        self.health.enter_graceful_shutdown()
        if self.agents is not None:
            self.agents.enter_graceful_shutdown()

    def stop(self, grace: float) -> None:
        stopped = self.api.stop(grace)
        if self.agents is not None:
            self.agents.stop(grace)
        stopped.wait()

    def wait(self) -> None:
        self.api.wait_for_termination()


def create_server(
    listeners: Listeners,
    interceptor: ApiInterceptor,
    allocations: AllocationService,
    fleet: FleetService,
    agents: AgentHub,
    tenants: TenantService,
    models: ModelService,
    workers: WorkerService,
    logs: LogRelay,
    tokens: TokenService,
    audit: AuditLog,
    max_workers: int = 64,
    max_agents: int = 2000,
    fleet_view: FleetView | None = None,
    deployments: DeploymentService | None = None,
    cost: CostService | None = None,
    routing: RoutingService | None = None,
) -> Servers:
    """Build and bind (not start) the servers; returns them with the bound ports.

    max_agents: threads for agent streams on the API port, used only when
    agents have no port of their own."""
    server = grpc.server(
        # An agent's stream on this server holds a thread for its lifetime; the
        # executor only starts threads as they are needed.
        futures.ThreadPoolExecutor(max_workers=max_workers + max_agents, thread_name_prefix="grpc"),
        interceptors=[interceptor],
        options=SERVER_OPTIONS,
    )
    scheduler = SchedulerServicer(allocations)
    admin = AdminServicer(
        fleet, allocations, agents, tenants, models, logs, tokens, audit, fleet_view
    )
    scheduler_pb2_grpc.add_SchedulerServicer_to_server(scheduler, server)
    admin_pb2_grpc.add_AdminServicer_to_server(admin, server)
    agents_pb2_grpc.add_AgentsServicer_to_server(
        AgentsServicer(fleet, agents, workers, logs), server
    )
    # The serving services, on both ports (admins with certificates use the agent port).
    serving: list[Callable[[Any], None]] = []
    if deployments is not None:
        deployments_servicer = DeploymentsServicer(deployments)
        serving.append(
            lambda s: deployments_pb2_grpc.add_DeploymentsServicer_to_server(
                deployments_servicer, s
            )
        )
    if cost is not None:
        cost_servicer = CostServicer(cost)
        serving.append(lambda s: cost_pb2_grpc.add_CostServicer_to_server(cost_servicer, s))
    if routing is not None:
        router_servicer = RouterServicer(routing)
        serving.append(lambda s: router_pb2_grpc.add_RouterServicer_to_server(router_servicer, s))
    for register in serving:
        register(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in (*SERVICE_NAMES, ""):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    api_port, _ = add_ports(server, listeners.api, "", listeners.tls)
    agent_server = None
    if listeners.agents:
        agent_server = AgentPortServer(
            listeners.agents,
            listeners.tls,
            interceptor.guard,
            SERVER_OPTIONS,
            SERVICE_NAMES,
            scheduler,
            admin,
            fleet,
            agents,
            workers,
            logs,
            serving,
        )
    ports = (api_port, agent_server.port if agent_server else 0)
    return Servers(server, agent_server, ports, health_servicer)


def set_serving(health_servicer: health.HealthServicer, serving: bool) -> None:
    """Every service's health at once: they all stand or fall with the database."""
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in (*SERVICE_NAMES, ""):
        health_servicer.set(name, status)
