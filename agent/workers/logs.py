"""Worker logs on the agent's disk, and serving them for LogRequests.

Each launch appends stdout and stderr to one file under
<state-dir>/logs/<allocation>/ (restarts append, with a marker line), kept
after the worker stops so a failure can still be read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from gpupool.v1 import agents_pb2

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
FOLLOW_POLL_S = 0.2


def log_dir(state_dir: Path, allocation_id: str) -> Path:
    return state_dir / "logs" / allocation_id


def log_path(state_dir: Path, allocation_id: str, launch_name: str) -> Path:
    return log_dir(state_dir, allocation_id) / f"{launch_name}.log"


def find_log(state_dir: Path, allocation_id: str, rank: int) -> Path | None:
    """The log holding `rank`: its own file, or its node launch's file."""
    own = log_path(state_dir, allocation_id, f"rank-{rank}")
    if own.exists():
        return own
    index = log_dir(state_dir, allocation_id) / "ranks.txt"
    if index.exists():
        for line in index.read_text().splitlines():
            name, _, ranks = line.partition(" ")
            if str(rank) in ranks.split(","):
                return log_path(state_dir, allocation_id, name)
    return None


class LogServer:
    """Streams log files back as LogChunks, one thread per request."""

    def __init__(self, state_dir: Path, send: Callable[[agents_pb2.AgentMessage], None]) -> None:
        self._state_dir = state_dir
        self._send = send
        self._lock = threading.Lock()
        self._follows: dict[str, threading.Event] = {}

    def handle(self, request: agents_pb2.LogRequest) -> None:
        if request.cancel:
            with self._lock:
                stop = self._follows.pop(request.request_id, None)
            if stop is not None:
                stop.set()
            return
        stop = threading.Event()
        if request.follow:
            with self._lock:
                self._follows[request.request_id] = stop
        threading.Thread(
            target=self._serve, args=(request, stop), name="worker-log", daemon=True
        ).start()

    def stop_all(self) -> None:
        with self._lock:
            follows, self._follows = self._follows, {}
        for stop in follows.values():
            stop.set()

    def _chunk(
        self, request_id: str, data: bytes = b"", eof: bool = False, error: str = ""
    ) -> None:
        chunk = agents_pb2.LogChunk(request_id=request_id, data=data, eof=eof, error=error)
        self._send(agents_pb2.AgentMessage(log_chunk=chunk))

    def _serve(self, request: agents_pb2.LogRequest, stop: threading.Event) -> None:
        path = find_log(self._state_dir, request.allocation_id, request.rank)
        if path is None:
            self._chunk(request.request_id, eof=True, error=f"no log for rank {request.rank}")
            return
        try:
            with path.open("rb") as file:
                size = path.stat().st_size
                if request.tail_bytes:
                    file.seek(max(0, size - request.tail_bytes))
                while not stop.is_set():
                    data = file.read(CHUNK)
                    if data:
                        self._chunk(request.request_id, data)
                        continue
                    if not request.follow:
                        break
                    stop.wait(FOLLOW_POLL_S)
        except OSError as exc:
            self._chunk(request.request_id, eof=True, error=str(exc))
            return
        self._chunk(request.request_id, eof=True)
