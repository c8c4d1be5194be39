"""Alembic environment: runs migrations under a PostgreSQL advisory lock so
that several scheduler replicas starting at once migrate exactly once."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, text

from scheduler.store.models import Base

MIGRATION_LOCK_KEY = 0x67707570  # "gpup"

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    url = config.attributes.get("database_url") or os.environ.get("GPUPOOL_DATABASE_URL")
    if not url:
        raise SystemExit("set GPUPOOL_DATABASE_URL (postgresql+psycopg://…) to run migrations")
    return str(url)


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    engine = create_engine(_database_url())
    with engine.connect() as conn:
        _migrate(conn)
    engine.dispose()


def _migrate(connection: object) -> None:
    conn = connection  # a sqlalchemy Connection
    conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})  # type: ignore[attr-defined]
    try:
        context.configure(connection=conn, target_metadata=target_metadata)  # type: ignore[arg-type]
        with context.begin_transaction():
            context.run_migrations()
    finally:
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})  # type: ignore[attr-defined]
        conn.commit()  # type: ignore[attr-defined]


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run against a database")
run_migrations_online()
