"""Stopping on SIGINT/SIGTERM without deadlocks, and child processes that
never outlive their parent (`gpupool up`).

A Python signal handler runs between two bytecodes of the main thread, so it
may interrupt anything, including another handler or a `threading.Event.set()`
that holds the event's lock: a handler that takes a lock can deadlock on it.
StopSignals' handler only appends to a list; the main loop polls it.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Sequence
from types import FrameType

POLL_S = 0.05


class StopSignals:
    """Counts SIGINT and SIGTERM from install() on (Ctrl-C in a terminal
    reaches the whole process group; a supervisor sends SIGTERM)."""

    def __init__(self) -> None:
        self._seen: list[int] = []

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._seen.append(signum)  # no lock, no I/O: safe however signals nest

    @property
    def count(self) -> int:
        return len(self._seen)

    def wait(self) -> None:
        """Until the first signal (time.sleep wakes for a signal's handler)."""
        while not self._seen:
            time.sleep(0.2)


def stop_processes(
    processes: Sequence[subprocess.Popen[bytes]], signals: StopSignals, deadline_s: float
) -> None:
    """SIGTERM each process, wait for them until deadline_s has passed or a
    second signal came, SIGKILL those left, and reap every one."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    until = time.monotonic() + deadline_s
    while time.monotonic() < until and signals.count < 2:
        if all(p.poll() is not None for p in processes):
            return
        time.sleep(POLL_S)
    for process in processes:
        if process.poll() is None:
            process.kill()
    for process in processes:
        process.wait()  # SIGKILL cannot be caught: this returns
