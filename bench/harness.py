"""What the benchmarks that run a real scheduler share: a scratch database,
a `gpupool serve` process on loopback (TLS and tokens unless told otherwise),
percentiles."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

import psycopg
from psycopg import sql
from rich.console import Console
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url

from scheduler.domain.callers import SYSTEM, Role
from scheduler.domain.clock import SystemClock
from scheduler.security.channels import ClientCredentials, channel_ready
from scheduler.security.pki import CertificateAuthority
from scheduler.services.tokens import TokenService
from scheduler.store.database import libpq_url, normalise_url

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def loopback_server(database_url: str) -> URL:
    """The PostgreSQL server URL; refuses anything but this machine."""
    server = make_url(normalise_url(database_url))
    if (server.host or "127.0.0.1") not in LOOPBACK:
        raise SystemExit("this benchmark only talks to a PostgreSQL on 127.0.0.1")
    return server


@contextmanager
def scratch_database(server: URL) -> Iterator[str]:
    """CREATE a gpupool_bench_<random> database; DROP it (FORCE) on the way out."""
    name = f"gpupool_bench_{uuid.uuid4().hex[:8]}"
    admin = libpq_url(server.render_as_string(hide_password=False))
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(name)))


@dataclass
class BenchPki:
    """A throwaway CA for one benchmark run: the server's certificate, the
    agents' certificates and the CA the clients trust."""

    directory: Path
    ca: CertificateAuthority

    @classmethod
    def create(cls, directory: Path) -> BenchPki:
        ca = CertificateAuthority.load_or_create(directory)
        ca.issue_server(["127.0.0.1", "localhost"]).write(directory, "server")
        return cls(directory, ca)

    def server_args(self) -> list[str]:
        d = self.directory
        return ["--tls-cert", str(d / "server.crt"), "--tls-key", str(d / "server.key"),
                "--client-ca", str(d / "ca.crt")]  # fmt: skip

    def agent(self, node: str) -> ClientCredentials:
        return ClientCredentials(ca_pem=self.ca.cert_pem, certificate=self.ca.issue_agent(node))


@dataclass
class BenchServer:
    pid: int
    address: str  # the API port
    agent_address: str  # the agents' port ("" when insecure: agents use the API port)
    log: IO[bytes]
    admin: ClientCredentials  # an admin token over TLS, or plaintext
    pki: BenchPki | None  # None when insecure

    def agent_credentials(self, node: str) -> ClientCredentials:
        return self.pki.agent(node) if self.pki else ClientCredentials(insecure=True)


def _free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def admin_token(database_url: str, ca_pem: bytes) -> ClientCredentials:
    """A fresh admin token written to the database, with the CA to trust."""
    return _admin_token(database_url, ca_pem)


def _admin_token(database_url: str, ca_pem: bytes) -> ClientCredentials:
    engine = create_engine(normalise_url(database_url))
    try:
        _, secret = TokenService(engine, SystemClock()).create(SYSTEM, "bench", Role.ADMIN, "")
    finally:
        engine.dispose()
    return ClientCredentials(ca_pem=ca_pem, token=secret)


@contextmanager
def scheduler_process(
    database_url: str,
    console: Console,
    command: list[str] | None = None,
    secure: bool = True,
    pki: BenchPki | None = None,
) -> Iterator[BenchServer]:
    """`gpupool serve` (or `command` + its flags) on free loopback ports: TLS
    with a throwaway CA (or `pki`, which replicas of one run share) and an
    admin token, or plaintext with secure=False. SIGTERM (then SIGKILL) on
    exit. The scheduler runs in a session of its own, so a Ctrl-C at the
    terminal reaches only the benchmark, which then stops it."""
    address, agent_address = _free_address(), _free_address() if secure else ""
    with (
        tempfile.TemporaryDirectory(prefix="gpupool-bench-") as tmp,
        tempfile.TemporaryFile() as log,
    ):
        if secure and pki is None:
            pki = BenchPki.create(Path(tmp))
        pki = pki if secure else None
        flags = ["--listen", address, "--agent-listen", agent_address]
        flags += pki.server_args() if pki else ["--insecure"]
        argv = [*(command or [sys.executable, "-m", "scheduler.cli.main", "serve"]), *flags]
        server = subprocess.Popen(
            argv,
            env={**os.environ, "GPUPOOL_DATABASE_URL": database_url},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            with console.status("starting the scheduler (migrations first)…"):
                plain = ClientCredentials(insecure=True)
                reach = ClientCredentials(ca_pem=pki.ca.cert_pem) if pki else plain
                if not channel_ready(address, reach, timeout=90):
                    log.seek(0)
                    console.print(log.read()[-3000:].decode(errors="replace"))
                    raise SystemExit("the scheduler did not come up")
            admin = _admin_token(database_url, pki.ca.cert_pem) if pki else plain
            yield BenchServer(server.pid, address, agent_address, log, admin, pki)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)


def percentile_ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else math.nan


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the context managers above stop the
    scheduler and drop the scratch database."""
    signal.signal(signal.SIGTERM, _interrupt)
