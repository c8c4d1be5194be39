"""Agents.Connect on the event loop: a stream costs two small tasks, not two
threads (issue 17: the sync server's pool capped a replica near 2,000 agents).

The outbound side awaits an asyncio.Queue that AgentSession.push feeds from
any thread through call_soon_threadsafe; the inbound side is a reader task.
Heartbeats are handled on the loop (in memory: a dict entry and, on a health
change, a queue put); whatever touches the database (the hello, observed
state, worker reports, log chunks, residency reports) runs on a bounded
thread pool, one message of a stream at a time, so a stream stays in order.
RegisterNode and Heartbeat stay sync: the interceptor runs them on its pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

import grpc

from gpupool.v1 import agents_pb2
from scheduler.api import converters
from scheduler.api.interceptor import current_caller
from scheduler.api.servicers import AgentsServicer
from scheduler.domain.callers import require_node
from scheduler.domain.errors import GpupoolError, InvalidArgument
from scheduler.services.agents import AgentHello, AgentHub, AgentSession, OutboundMessage
from scheduler.services.fleet import FleetService
from scheduler.services.worker_logs import LogRelay
from scheduler.services.workers import WorkerService

log = logging.getLogger(__name__)

T = TypeVar("T")


def _in_memory(message: agents_pb2.AgentMessage) -> bool:
    """A heartbeat without a residency report touches no database."""
    if message.WhichOneof("body") != "heartbeat":
        return False
    return converters.heartbeat_residency(message.heartbeat) is None


class AioAgentsServicer(AgentsServicer):
    def __init__(
        self,
        fleet: FleetService,
        agents: AgentHub,
        workers: WorkerService,
        logs: LogRelay,
        pool: Executor,
    ) -> None:
        super().__init__(fleet, agents, workers, logs)
        self._pool = pool

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        ctx = contextvars.copy_context()  # the caller, for use cases that read it
        return await asyncio.get_running_loop().run_in_executor(self._pool, ctx.run, fn, *args)

    async def Connect(  # type: ignore[override]
        self,
        request_iterator: AsyncIterator[agents_pb2.AgentMessage],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[agents_pb2.SchedulerMessage]:
        first = await anext(request_iterator, None)
        if first is None or first.WhichOneof("body") != "hello":
            raise InvalidArgument("an agent's stream must open with a hello")
        hello = converters.agent_hello(first.hello)
        if not hello.node:
            raise InvalidArgument("hello.node.name is required")
        require_node(current_caller(), hello.node, "the hello")
        loop = asyncio.get_running_loop()
        outbound: asyncio.Queue[OutboundMessage | None] = asyncio.Queue()

        def sink(message: OutboundMessage | None) -> None:
            # RuntimeError: the loop has closed; the server is gone, and the stream with it.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(outbound.put_nowait, message)

        session = await self._connect(hello, sink)
        reader: asyncio.Task[None] | None = None
        try:
            await self._blocking(self._workers.report, hello.node, hello.workers)
            del first, hello  # a stream lives for days: keep no copy of its hello
            reader = asyncio.create_task(self._read_stream(request_iterator, session))
            while (message := await outbound.get()) is not None:
                yield converters.scheduler_message(message)
        finally:
            if reader is not None:
                reader.cancel()
            self._agents.disconnect(session)

    async def _connect(
        self, hello: AgentHello, sink: Callable[[OutboundMessage | None], None]
    ) -> AgentSession:
        """Register the hello's session. A stream that ends meanwhile (the agent
        died mid-hello) cancels this await, not the registration already running
        on the pool: its session is closed once it exists, or it would count as
        connected until the node's next hello."""
        registering = asyncio.ensure_future(self._blocking(self._agents.connect, hello, sink))
        try:
            return await asyncio.shield(registering)
        except asyncio.CancelledError:
            registering.add_done_callback(self._disconnect_registered)
            raise

    def _disconnect_registered(self, registering: asyncio.Future[AgentSession]) -> None:
        if not registering.cancelled() and registering.exception() is None:
            self._agents.disconnect(registering.result())

    async def _read_stream(
        self, messages: AsyncIterator[agents_pb2.AgentMessage], session: AgentSession
    ) -> None:
        try:
            async for message in messages:
                try:
                    if _in_memory(message):
                        self._handle(session, message)
                    else:
                        await self._blocking(self._handle, session, message)
                except GpupoolError as exc:
                    # One bad report is dropped, not the stream (as on the sync server).
                    kind = message.WhichOneof("body")
                    log.warning("agent %s: %s refused: %s", session.node, kind, exc.message)
        except (grpc.RpcError, asyncio.CancelledError):
            pass  # the agent went away or the stream ended; the session closes below
        except Exception:
            log.exception("agent %s: handling its message failed", session.node)
        finally:
            session.close()
