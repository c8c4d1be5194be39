"""One worker process: start it in its own process group with its log,
poll it, signal the whole group, check readiness, and find it again after
an agent restart (pid plus its kernel start time, so a reused pid is never
mistaken for our worker)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.workers.env import Launch
from scheduler.domain.worker_templates import Readiness, substitute

EXIT_UNKNOWN = -1  # an adopted worker that left no exit file
# A shell between agent and worker writes the worker's exit status to a file,
# so a restarted agent can still tell success from failure of a worker it
# adopted (it is no longer its child). The trap keeps the shell alive through
# checkpoint signals; the worker itself gets the default dispositions back.
_WRAPPER = 'trap ":" USR1 USR2 HUP; "$@"; code=$?; echo $code > "$0"; exit $code'


def exit_file(log_path: Path) -> Path:
    return log_path.with_suffix(".exit")


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks); None when gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass
class WorkerProcess:
    launch: Launch
    pid: int
    ticks: int
    log_path: Path
    log_offset: int  # where this start's output begins in the log
    popen: subprocess.Popen[bytes] | None = None  # None: adopted from an earlier agent
    started_at: float = field(default_factory=time.monotonic)
    ready: bool = False
    exit_code: int | None = None
    stopping_since: float | None = None

    @classmethod
    def start(cls, launch: Launch, log_path: Path, marker: str) -> WorkerProcess:
        """Start it (OSError when the command cannot run)."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            log.write(f"--- gpupool: {marker} ---\n".encode())
            log.flush()
            offset = log.tell()
            exit_file(log_path).unlink(missing_ok=True)
            popen = subprocess.Popen(
                ["/bin/sh", "-c", _WRAPPER, str(exit_file(log_path)), *launch.argv],
                env={**os.environ, **launch.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: signals reach its children
            )
        ticks = start_ticks(popen.pid) or 0
        return cls(launch, popen.pid, ticks, log_path, offset, popen)

    @classmethod
    def adopt(cls, launch: Launch, record: dict[str, Any]) -> WorkerProcess | None:
        pid, ticks = int(record["pid"]), int(record["ticks"])
        if start_ticks(pid) != ticks:
            return None
        return cls(launch, pid, ticks, Path(record["log"]), int(record["log_offset"]))

    def record(self) -> dict[str, Any]:
        return {
            "ranks": list(self.launch.ranks),
            "pid": self.pid,
            "ticks": self.ticks,
            "log": str(self.log_path),
            "log_offset": self.log_offset,
            "socket": self.launch.checkpoint_socket,
        }

    def poll(self) -> int | None:
        """The exit code once it has exited (EXIT_UNKNOWN for an adopted one)."""
        if self.exit_code is not None:
            return self.exit_code
        if self.popen is not None:
            code = self.popen.poll()
            if code is not None:
                # A child killed by a signal reads -signum: keep that.
                self.exit_code = code
            return self.exit_code
        if start_ticks(self.pid) != self.ticks:
            try:
                self.exit_code = int(exit_file(self.log_path).read_text().strip())
            except (OSError, ValueError):
                self.exit_code = EXIT_UNKNOWN
        return self.exit_code

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def terminate(self) -> None:
        if self.poll() is None and self.stopping_since is None:
            self.stopping_since = time.monotonic()
            self.signal(signal.SIGTERM)

    def enforce_stop(self, timeout_s: float) -> bool:
        """SIGKILL the group once the stop timeout has passed; True when gone."""
        if self.poll() is not None:
            self.signal(signal.SIGKILL)  # children that outlived their parent
            return True
        if self.stopping_since is not None and time.monotonic() - self.stopping_since > timeout_s:
            self.signal(signal.SIGKILL)
        return False

    def check_ready(self, readiness: Readiness, values: dict[str, str]) -> bool:
        if self.ready:
            return True
        if readiness.kind == "none":
            self.ready = True
        elif readiness.kind == "log":
            self.ready = self._log_matches(readiness.target)
        elif readiness.kind == "tcp":
            self.ready = _tcp_open(int(substitute(readiness.target, values)))
        elif readiness.kind == "http":
            self.ready = _http_ok(substitute(readiness.target, values))
        return self.ready

    def overdue(self, readiness: Readiness) -> bool:
        return not self.ready and time.monotonic() - self.started_at > readiness.timeout_s

    def _log_matches(self, pattern: str) -> bool:
        try:
            with self.log_path.open("rb") as log:
                log.seek(self.log_offset)
                text = log.read().decode(errors="replace")
        except OSError:
            return False
        return re.search(pattern, text, re.MULTILINE) is not None


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as reply:
            return 200 <= int(reply.status) < 300
    except (OSError, ValueError):
        return False
