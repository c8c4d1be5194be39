"""A PostgreSQL of the chaos run's own that it may `kill -9` and start again
on the same port and data directory: pgserver's binaries, initdb in a
temporary directory, the postmaster as our child in its own process group.

Never the machine's PostgreSQL: the port is a fresh one on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import psycopg
from pgserver._commands import POSTGRES_BIN_PATH
from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

# initdb and postgres refuse to run as root; pgserver runs them as this user.
SYSTEM_USER = "pgserver"
READY_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class KillablePostgres:
    def __init__(self, directory: Path) -> None:
        self.data = directory / "pgdata"
        self.sockets = directory / "pgsock"
        self.log_path = directory / "postgres.log"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.process: subprocess.Popen[bytes] | None = None
        self._user: str | None = None
        self._init(directory)

    def _init(self, directory: Path) -> None:
        self.sockets.mkdir(parents=True)
        if os.geteuid() == 0:
            entry = ensure_user_exists(SYSTEM_USER)
            assert entry is not None
            self._user = SYSTEM_USER
            self.data.mkdir()
            ensure_prefix_permissions(self.data)  # the user walks into our directory
            ensure_prefix_permissions(POSTGRES_BIN_PATH)
            ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)  # r-x for group and others
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
            for path in (self.data, self.sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            self.log_path.touch()
            os.chown(self.log_path, entry.pw_uid, entry.pw_gid)
        command = [
            str(POSTGRES_BIN_PATH / "initdb"),
            "-D",
            str(self.data),
            "--auth=trust",
            "--encoding=utf8",
            "-U",
            "postgres",
        ]
        subprocess.run(command, check=True, capture_output=True, user=self._user)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.poll() is None else None

    def start(self) -> None:
        """Start the postmaster (crash recovery first after a kill) and wait for it."""
        command = [
            str(POSTGRES_BIN_PATH / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-k",
            str(self.sockets),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=64MB",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                user=self._user,
                start_new_session=True,  # kill -9 reaches every backend
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"postgres exited {self.process.returncode}; see {self.log_path}"
                )
            try:
                with psycopg.connect(self.url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(f"postgres did not accept connections; see {self.log_path}")

    def kill9(self) -> None:
        """SIGKILL the postmaster and every backend at once: a crash, no shutdown."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        # Backends are gone with the group; give the kernel a moment to free the port.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _listening(self.port):
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # fast shutdown
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill9()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0
