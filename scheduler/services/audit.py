"""The audit trail: who changed what, on what, when, from where, and how it ended.

Calls enqueue an event and return; a writer thread inserts what has queued
in one statement every FLUSH_INTERVAL_S (as Kubernetes' batching audit
backend does), so auditing costs an Allocate no round trip. A crash loses
at most that interval's events; a queue over MAX_QUEUED drops new events
and says so in the log rather than stall the API.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from scheduler.domain.callers import Caller
from scheduler.domain.clock import Clock
from scheduler.domain.errors import InvalidArgument
from scheduler.store import audit as store

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.2
MAX_QUEUED = 100_000
MAX_BATCH = 5_000
MAX_LIMIT = 1000
_LIMITS = {"actor": 256, "tenant": 128, "node": 253, "method": 128, "target": 256, "peer": 128}


@dataclass(frozen=True)
class AuditEvent:
    at: datetime
    actor: str
    role: str
    tenant: str
    node: str
    method: str
    target: str
    peer: str
    code: str
    detail: str = ""

    def row(self) -> dict[str, Any]:
        row = {k: v[: _LIMITS[k]] if k in _LIMITS else v for k, v in vars(self).items()}
        row["detail"] = self.detail[:512]
        return row


class AuditLog:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock
        self._queue: queue.Queue[AuditEvent] = queue.Queue(MAX_QUEUED)
        self._stop = threading.Event()
        self._flushed = threading.Condition()
        self._dropped = 0
        self._thread = threading.Thread(target=self._run, name="audit", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._write_queued()

    def record(self, caller: Caller, method: str, target: str, code: str, detail: str = "") -> None:
        event = AuditEvent(
            at=self._clock.now(),
            actor=caller.describe(),
            role=caller.role.value,
            tenant=caller.tenant,
            node=caller.node,
            method=method,
            target=target,
            peer=caller.peer,
            code=code,
            detail=detail,
        )
        self._enqueue(event)

    def flush(self) -> None:
        """Write everything queued so far (tests and shutdown)."""
        self._write_queued()

    def query(
        self, since: datetime | None, actor: str, tenant: str, node: str, limit: int
    ) -> list[AuditEvent]:
        if limit > MAX_LIMIT:
            raise InvalidArgument(f"limit may be at most {MAX_LIMIT}, got {limit}")
        self.flush()
        with self._engine.connect() as conn:
            rows = store.list_events(conn, since, actor, tenant, node, limit or 100)
        return [AuditEvent(**{k: v for k, v in r.items() if k != "id"}) for r in rows]

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL_S):
            self._write_queued()

    def _write_queued(self) -> None:
        with self._flushed:  # one writer at a time keeps events in order
            while True:
                events: list[AuditEvent] = []
                while len(events) < MAX_BATCH:
                    try:
                        events.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                if not events:
                    return
                try:
                    with self._engine.begin() as conn:
                        store.insert_events(conn, [e.row() for e in events])
                except DBAPIError:
                    log.warning("could not write %d audit events; retrying", len(events))
                    for event in events:
                        self._enqueue(event)
                    return

    def _enqueue(self, event: AuditEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._dropped += 1
            if self._dropped % 1000 == 1:
                log.warning("audit queue full: %d events dropped so far", self._dropped)
