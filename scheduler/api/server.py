"""The gRPC server: the three services plus health checking and reflection."""

from __future__ import annotations

from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gpupool.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    agents_pb2,
    agents_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
)
from scheduler.api.errors import ErrorMappingInterceptor
from scheduler.api.servicers import AdminServicer, AgentsServicer, SchedulerServicer
from scheduler.services.agents import AgentHub
from scheduler.services.allocations import AllocationService
from scheduler.services.fleet import FleetService
from scheduler.services.models import ModelService
from scheduler.services.tenants import TenantService
from scheduler.services.worker_logs import LogRelay
from scheduler.services.workers import WorkerService

SERVICE_NAMES = (
    scheduler_pb2.DESCRIPTOR.services_by_name["Scheduler"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
    agents_pb2.DESCRIPTOR.services_by_name["Agents"].full_name,
)


def create_server(
    address: str,
    allocations: AllocationService,
    fleet: FleetService,
    agents: AgentHub,
    tenants: TenantService,
    models: ModelService,
    workers: WorkerService,
    logs: LogRelay,
    max_workers: int = 64,
    max_agents: int = 2000,
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """Build and bind (not start) the server; returns it with the bound port."""
    server = grpc.server(
        # Each agent's stream holds a thread for its lifetime; the executor
        # only starts threads as they are needed.
        futures.ThreadPoolExecutor(max_workers=max_workers + max_agents, thread_name_prefix="grpc"),
        interceptors=[ErrorMappingInterceptor()],
        options=[("grpc.so_reuseport", 0)],
    )
    scheduler_pb2_grpc.add_SchedulerServicer_to_server(SchedulerServicer(allocations), server)
    admin_pb2_grpc.add_AdminServicer_to_server(
        AdminServicer(fleet, allocations, agents, tenants, models, logs), server
    )
    agents_pb2_grpc.add_AgentsServicer_to_server(
        AgentsServicer(fleet, agents, workers, logs), server
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in (*SERVICE_NAMES, ""):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return server, port, health_servicer
