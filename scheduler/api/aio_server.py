"""The agent port on grpc.aio, on an event loop of its own thread, inside
the replica's process (README "Scale" says why).

Every service the agent port served on the sync server is here: Agents
(Connect async, api/aio_agents.py), and Scheduler and Admin for admins with
client certificates, whose sync servicers run on a thread pool through the
aio interceptor; gRPC health and reflection as on the API port.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent import futures
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import _async as health_aio  # the aio HealthServicer
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gpupool.v1 import admin_pb2_grpc, agents_pb2_grpc, scheduler_pb2_grpc
from scheduler.api.aio_agents import AioAgentsServicer
from scheduler.api.aio_interceptor import AioApiInterceptor
from scheduler.api.interceptor import CallGuard
from scheduler.api.servicers import AdminServicer, SchedulerServicer
from scheduler.security.channels import ServerTls, add_agent_port
from scheduler.services.agents import AgentHub
from scheduler.services.fleet import FleetService
from scheduler.services.worker_logs import LogRelay
from scheduler.services.workers import WorkerService

log = logging.getLogger(__name__)

T = TypeVar("T")

# Threads for sync handlers (admin calls, RegisterNode; a watch holds one while
# it waits) and, apart, for the database work of agent streams: a burst of
# reconnecting agents queues its hellos instead of taking every connection.
HANDLER_THREADS = 64
AGENT_DB_THREADS = 16


class AgentPortServer:
    def __init__(
        self,
        address: str,
        tls: ServerTls | None,
        guard: CallGuard,
        options: list[tuple[str, Any]],
        service_names: tuple[str, ...],
        scheduler: SchedulerServicer,
        admin: AdminServicer,
        fleet: FleetService,
        agents: AgentHub,
        workers: WorkerService,
        logs: LogRelay,
        extra: Sequence[Callable[[Any], None]] = (),
    ) -> None:
        # More sync services to serve here (each adds itself to a server).
        self._extra = list(extra)
        self._handlers = futures.ThreadPoolExecutor(HANDLER_THREADS, "agent-port")
        self._agent_db = futures.ThreadPoolExecutor(AGENT_DB_THREADS, "agent-db")
        self._service_names = service_names
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="agent-port-loop", daemon=True
        )
        self._thread.start()
        self._health = health_aio.HealthServicer()
        agents_servicer = AioAgentsServicer(fleet, agents, workers, logs, self._agent_db)
        self._server: grpc.aio.Server
        self.port = self._run(
            self._build(address, tls, guard, options, scheduler, admin, agents_servicer)
        )
        self._stopped = False

    def _run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """Run on the server's loop from another thread and wait for the result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    async def _build(
        self,
        address: str,
        tls: ServerTls | None,
        guard: CallGuard,
        options: list[tuple[str, Any]],
        scheduler: SchedulerServicer,
        admin: AdminServicer,
        agents: AioAgentsServicer,
    ) -> int:
        # Made on its loop: a grpc.aio server belongs to the loop it was made on.
        self._server = grpc.aio.server(
            interceptors=[AioApiInterceptor(guard, self._handlers)], options=options
        )
        scheduler_pb2_grpc.add_SchedulerServicer_to_server(scheduler, self._server)
        admin_pb2_grpc.add_AdminServicer_to_server(admin, self._server)
        agents_pb2_grpc.add_AgentsServicer_to_server(agents, self._server)
        for register in self._extra:
            register(self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        for name in (*self._service_names, ""):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        reflection.enable_server_reflection(
            (*self._service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
        )
        return add_agent_port(self._server, address, tls)

    def start(self) -> None:
        self._run(self._server.start())

    def set_serving(self, serving: bool) -> None:
        """Every service's health at once (called from the database health loop)."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        if self._stopped:
            return
        for name in (*self._service_names, ""):
            asyncio.run_coroutine_threadsafe(self._health.set(name, status), self._loop)

    def enter_graceful_shutdown(self) -> None:
        if not self._stopped:
            self._run(self._health.enter_graceful_shutdown())

    def stop(self, grace: float) -> None:
        """Stop serving (open streams get `grace` seconds), then the loop."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._run(self._server.stop(grace), timeout=grace + 10)
        except (TimeoutError, futures.TimeoutError):
            log.warning("the agent port did not stop within %.1fs", grace + 10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._handlers.shutdown(wait=False, cancel_futures=True)
        self._agent_db.shutdown(wait=False, cancel_futures=True)
