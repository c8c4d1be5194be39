"""What the benchmarks that run a real scheduler share: a scratch database,
a `gpupool serve` process on loopback, percentiles."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import psycopg
from psycopg import sql
from rich.console import Console
from sqlalchemy.engine import URL, make_url

from scheduler.app import channel_ready
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


@contextmanager
def scheduler_process(
    database_url: str, console: Console, command: list[str] | None = None
) -> Iterator[tuple[int, str, IO[bytes]]]:
    """`gpupool serve` (or `command` + address) on a free loopback port;
    yields (pid, address, log); SIGTERM (then SIGKILL) on exit."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    argv = [*command, address] if command else [
        sys.executable, "-m", "scheduler.cli.main", "serve", "--listen", address
    ]  # fmt: skip
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            argv,
            env={**os.environ, "GPUPOOL_DATABASE_URL": database_url},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            with console.status("starting the scheduler (migrations first)…"):
                if not channel_ready(address, timeout=90):
                    log.seek(0)
                    console.print(log.read()[-3000:].decode(errors="replace"))
                    raise SystemExit("the scheduler did not come up")
            yield server.pid, address, log
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
