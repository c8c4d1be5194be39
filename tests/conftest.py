"""Shared fixtures: one real PostgreSQL per test session, schema by alembic.

PostgreSQL comes from GPUPOOL_TEST_DATABASE_URL when set, else from
testcontainers when a Docker engine answers, else from an embedded pgserver.
Each session gets its own fresh database on that server.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from scheduler.store.database import migrate, normalise_url

TABLES = (
    "allocation_events, mig_slots, gpu_claims, allocations, gpus, nodes, tenants, "
    "api_tokens, audit_events, leader_lease, agent_commands, "
    "deployments, deployment_events, replicas, replica_metrics"
)


def _docker_available() -> bool:
    try:
        import docker  # testcontainers' dependency

        docker.from_env().ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A URL of a PostgreSQL server we may create databases on."""
    configured = os.environ.get("GPUPOOL_TEST_DATABASE_URL")
    if configured:
        yield normalise_url(configured)
        return
    if _docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver="psycopg") as container:
            yield normalise_url(container.get_connection_url())
        return
    import pgserver

    data_dir = Path(tempfile.mkdtemp(prefix="gpupool-test-pg-"))
    server = pgserver.get_server(str(data_dir), cleanup_mode="stop")
    try:
        yield normalise_url(str(server.get_uri()))
    finally:
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh database for this test session, built by `alembic upgrade head`."""
    name = f"gpupool_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    migrate(url)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture
def clean_database(database_url: str) -> str:
    """The session database with every row removed."""
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return database_url
