"""Worker logs, relayed from the node agent that keeps them: Admin.WorkerLogs
sends a LogRequest down the agent's stream and yields the LogChunks that
come back on it. Nothing is stored on the scheduler.

When the agent streams to another replica, the request goes there through the
AgentRelay (services/relay.py) and the chunks come back as notifications.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import Engine

from scheduler.domain.errors import FailedPrecondition, GpupoolError, NotFound, Unavailable
from scheduler.services.agents import AgentHub, LogRequest
from scheduler.services.relay import AgentRelay
from scheduler.store import allocations as store

POLL_S = 1.0
# A log from another replica's agent that sends nothing for this long is given up on.
REMOTE_QUIET_S = 30.0


@dataclass(frozen=True)
class LogChunk:
    request_id: str
    data: bytes
    eof: bool = False
    error: str = ""


class LogRelay:
    def __init__(self, engine: Engine, agents: AgentHub, relay: AgentRelay) -> None:
        self._engine = engine
        self._agents = agents
        self._relay = relay
        self._lock = threading.Lock()
        self._waiting: dict[str, queue.Queue[LogChunk]] = {}
        # Requests another replica relayed here: request id -> that replica.
        self._forwards: dict[str, str] = {}
        relay.on_log_chunk = self._received
        relay.on_relayed_log = self._forward

    def deliver(self, chunk: LogChunk) -> None:
        """A chunk from an agent; forwarded to the replica that asked for it,
        or dropped when its reader has gone."""
        with self._lock:
            waiting = self._waiting.get(chunk.request_id)
            reply_to = self._forwards.get(chunk.request_id)
            if reply_to is not None and (chunk.eof or chunk.error):
                del self._forwards[chunk.request_id]
        if waiting is not None:
            waiting.put(chunk)
        elif reply_to is not None:
            self._relay.send_log_chunk(
                reply_to, chunk.request_id, chunk.data, chunk.eof, chunk.error
            )

    def _received(self, request_id: str, data: bytes, eof: bool, error: str) -> None:
        self.deliver(LogChunk(request_id, data, eof, error))

    def _forward(self, request_id: str, reply_to: str) -> None:
        with self._lock:
            self._forwards[request_id] = reply_to

    def stream(
        self,
        allocation_id: str,
        rank: int,
        tail_bytes: int,
        follow: bool,
        is_active: Callable[[], bool],
    ) -> Iterator[bytes]:
        with self._engine.connect() as conn:
            record = store.get_allocation(conn, allocation_id, with_events=False)
        if record.worker is None:
            raise NotFound(f"allocation {allocation_id} launches no workers: no logs")
        if rank >= len(record.bindings):
            raise NotFound(
                f"allocation {allocation_id} has ranks 0..{len(record.bindings) - 1}, not {rank}"
            )
        node = record.bindings[rank]["node"]
        session = self._agents.session_for(node)  # None: it streams to another replica
        request_id = uuid.uuid4().hex
        chunks: queue.Queue[LogChunk] = queue.Queue()
        with self._lock:
            self._waiting[request_id] = chunks
        try:
            self._relay.deliver(
                node, LogRequest(request_id, allocation_id, rank, tail_bytes, follow)
            )
            quiet_since = time.monotonic()
            while is_active():
                try:
                    chunk = chunks.get(timeout=POLL_S)
                except queue.Empty:
                    if session is not None and session.closed:
                        raise FailedPrecondition(f"the agent of {node!r} disconnected") from None
                    if not follow and time.monotonic() - quiet_since > REMOTE_QUIET_S:
                        raise Unavailable(
                            f"the agent of {node!r} stopped answering; retry"
                        ) from None
                    continue
                quiet_since = time.monotonic()
                if chunk.data:
                    yield chunk.data
                if chunk.error:
                    raise NotFound(f"rank {rank} of {allocation_id} on {node}: {chunk.error}")
                if chunk.eof:
                    return
        finally:
            with self._lock:
                del self._waiting[request_id]
            if follow:
                with contextlib.suppress(GpupoolError):  # the agent is gone: nothing to stop
                    cancel = LogRequest(request_id, allocation_id, rank, cancel=True)
                    self._relay.deliver(node, cancel)
