"""Engines, migrations and the embedded PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pgserver
import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "migrations"


def normalise_url(url: str) -> str:
    """Accept postgres://, postgresql:// or postgresql+psycopg:// and use psycopg 3."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.drivername in ("postgresql", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername != "postgresql+psycopg":
        raise ValueError(f"gpupool needs PostgreSQL, got a {parsed.drivername} URL")
    return parsed.render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The same URL in the plain form that psycopg.connect() takes."""
    parsed = make_url(normalise_url(url)).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def create_db_engine(url: str, pool_size: int = 10) -> Engine:
    return create_engine(
        normalise_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping: it costs a round trip per transaction on the hot path;
        # a dropped connection fails one batch, which the allocator retries.
        pool_pre_ping=False,
        pool_recycle=1800,
    )


@contextmanager
def snapshot_connection(engine: Engine) -> Iterator[Connection]:
    """A read-only REPEATABLE READ transaction: several reads, one moment."""
    conn = engine.connect().execution_options(isolation_level="REPEATABLE READ")
    with conn, conn.begin():
        yield conn


# What libpq refuses before sending anything, raised as psycopg.OperationalError
# though the connection is fine: a bug in the statement, not an outage.
_REFUSED_BY_DRIVER = ("number of parameters must be between",)


def refused_by_driver(exc: BaseException) -> bool:
    """A statement the driver refused to send (over 65,535 bind parameters, …)."""
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    return isinstance(cause, psycopg.OperationalError) and any(
        text in str(cause) for text in _REFUSED_BY_DRIVER
    )


def current_snapshot(conn: Connection) -> str:
    """The transaction's snapshot in text form ("xmin:xmax:xip,…"): which
    transactions' writes it sees."""
    return str(conn.execute(text("SELECT pg_current_snapshot()::text")).scalar_one())


def migrate(url: str) -> None:
    """`alembic upgrade head`, under the advisory lock taken in migrations/env.py."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = normalise_url(url)
    command.upgrade(config, "head")


class EmbeddedPostgres:
    """The pgserver-managed PostgreSQL in data_dir; its data outlives the
    process, so a restart finds every allocation where it was left."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        # cleanup_mode "stop": the server stops when its last user calls stop().
        self._server = pgserver.get_server(str(data_dir), cleanup_mode="stop")
        self.url = normalise_url(str(self._server.get_uri()))
        log.info("embedded PostgreSQL in %s", data_dir)

    def stop(self) -> None:
        self._server.cleanup()
