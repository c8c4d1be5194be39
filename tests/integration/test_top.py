"""`gpupool top` under a pseudo-terminal against a real scheduler: it draws
the fleet, shows an allocation placed while it runs (pushed by WatchFleet,
not polled), and quits on `q`."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

from gpupool.v1 import types_pb2
from tests.integration.conftest import Client
from tests.integration.test_allocate import allocate

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]")


class Screen:
    """What the program wrote to the terminal, escapes stripped."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.raw = b""

    def read_until(self, text: str, timeout: float = 30.0, after: str = "") -> str:
        """Read until `text` shows (after the last `after`, when given)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.text
            if text in (shown[shown.rfind(after) :] if after else shown):
                return self.text
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                try:
                    self.raw += os.read(self.fd, 65536)
                except OSError:  # the program exited and closed the terminal
                    break
        raise AssertionError(f"{text!r} never appeared on the screen:\n{self.text[-3000:]}")

    @property
    def text(self) -> str:
        return ANSI.sub(b"", self.raw).decode(errors="replace")


def test_top_shows_an_allocation_placed_while_it_runs_and_quits_on_q(
    fleet_client: Client,
) -> None:
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 220, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "scheduler.cli.main", *fleet_client.cli_args(), "top"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "220", "LINES": "60"},
        close_fds=True,
    )
    os.close(terminal)
    screen = Screen(controller)
    try:
        screen.read_until("GPUs by node and model")
        screen.read_until("a100-40-mig")
        placed = allocate(
            fleet_client, "top-demo", whole=types_pb2.WholeGpus(count=2), gpu_models=["H200"]
        )
        screen.read_until(placed.id)
        # A frame may arrive in pieces: read on until its events row is whole.
        screen.read_until("placed", after="Recent events")
        os.write(controller, b"q")
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
