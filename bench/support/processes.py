"""`gpupool up` as a terminal's job, and which of its processes are left
(tests/e2e/test_shutdown.py and bench/shutdown.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

READY_LINE = "gpupool is up"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_up(
    fleet: Path, data_dir: Path, log: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """`gpupool up` in its own process group (its pid is the group's id), as a
    shell starts a foreground job: a Ctrl-C there reaches the whole group."""
    command = [
        sys.executable, "-m", "scheduler.cli.main", "up",
        "--fleet", str(fleet),
        "--data-dir", str(data_dir),
        "--listen", f"127.0.0.1:{free_port()}",
        "--agent-listen", f"127.0.0.1:{free_port()}",
    ]  # fmt: skip
    clean = {k: v for k, v in env.items() if not k.startswith("GPUPOOL_")}
    with log.open("wb") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=clean, cwd=data_dir.parent,
            start_new_session=True,
        )  # fmt: skip


def wait_until_up(up: subprocess.Popen[bytes], log: Path, timeout: float) -> bool:
    """True once `up` printed that it serves; False if it exited or timed out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and up.poll() is None:
        if READY_LINE in log.read_text(errors="replace"):
            return True
        time.sleep(0.1)
    return False


def alive_in_group(pgid: int) -> list[psutil.Process]:
    """Live (not zombie) processes of the process group."""
    alive = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return alive


def processes_using(path: Path) -> list[psutil.Process]:
    """Processes whose command line names path: the embedded PostgreSQL runs
    in a session of its own (pg_ctl), outside `up`'s group."""
    found = []
    for process in psutil.process_iter():
        try:
            if any(str(path) in part for part in process.cmdline()):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found
