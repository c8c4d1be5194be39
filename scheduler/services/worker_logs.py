"""Worker logs, relayed from the node agent that keeps them: Admin.WorkerLogs
sends a LogRequest down the agent's stream and yields the LogChunks that
come back on it. Nothing is stored on the scheduler."""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import Engine

from scheduler.domain.errors import FailedPrecondition, NotFound
from scheduler.services.agents import AgentHub, LogRequest
from scheduler.store import allocations as store

POLL_S = 1.0


@dataclass(frozen=True)
class LogChunk:
    request_id: str
    data: bytes
    eof: bool = False
    error: str = ""


class LogRelay:
    def __init__(self, engine: Engine, agents: AgentHub) -> None:
        self._engine = engine
        self._agents = agents
        self._lock = threading.Lock()
        self._waiting: dict[str, queue.Queue[LogChunk]] = {}

    def deliver(self, chunk: LogChunk) -> None:
        """A chunk from an agent; dropped when its reader has gone."""
        with self._lock:
            waiting = self._waiting.get(chunk.request_id)
        if waiting is not None:
            waiting.put(chunk)

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
        session = self._agents.session_for(node)
        if session is None or session.closed:
            raise FailedPrecondition(
                f"the agent of node {node!r} (rank {rank}) is not connected to this replica"
            )
        request_id = uuid.uuid4().hex
        chunks: queue.Queue[LogChunk] = queue.Queue()
        with self._lock:
            self._waiting[request_id] = chunks
        session.push(LogRequest(request_id, allocation_id, rank, tail_bytes, follow))
        try:
            while is_active():
                try:
                    chunk = chunks.get(timeout=POLL_S)
                except queue.Empty:
                    if session.closed:
                        raise FailedPrecondition(f"the agent of {node!r} disconnected") from None
                    continue
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
                session.push(LogRequest(request_id, allocation_id, rank, cancel=True))
