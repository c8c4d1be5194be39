"""The schema itself refuses over-commit, MIG overlap and mixed GPU modes,
whatever the Python code does (DESIGN.md principle 1)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import IntegrityError, ProgrammingError

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def engine(clean_database: str) -> Iterator[Engine]:
    engine = create_engine(clean_database)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO nodes (id, name, hostname, labels, admin_state, reachable) "
                "OVERRIDING SYSTEM VALUE VALUES (1, 'n1', 'n1', '{}', 'active', true)"
            )
        )
        for gpu_id, mig in ((1, False), (2, True)):
            conn.execute(
                text(
                    "INSERT INTO gpus (id, node_id, uuid, index, model, memory_mib, mig_enabled, health, "
                    "health_reasons, nvlink_peers, pci_bus_id, used_milli, used_memory_mib, mig_used_compute) "
                    "OVERRIDING SYSTEM VALUE VALUES (:id, 1, :uuid, :id, 'A100-80GB', 81920, :mig, "
                    "'healthy', '[]', '[]', '', 0, 0, 0)"
                ),
                {"id": gpu_id, "uuid": f"GPU-{gpu_id}", "mig": mig},
            )
        for i in range(6):
            conn.execute(
                text(
                    "INSERT INTO allocations (id, tenant, request_id, request_hash, kind, gpu_count, milli, "
                    "memory_mib, mig_profile, gpu_models, priority_class, priority, workload_class, model, "
                    "labels, state, pending_reasons, unschedulable, bindings, message, node, created_at, "
                    "updated_at, event_count) VALUES (:id, 't', :id, 'h', 'fraction', 0, 0, 0, '', '[]', "
                    "'normal', 50, 'unspecified', '', '{}', 'placed', '[]', false, '[]', '', 'n1', :now, :now, 0)"
                ),
                {"id": f"a{i}", "now": NOW},
            )
    yield engine
    engine.dispose()


def claim(
    conn: Connection,
    allocation: str,
    gpu: int,
    milli: int = 0,
    memory: int = 0,
    profile: str | None = None,
    start: int | None = None,
    size: int = 0,
    compute: int = 0,
) -> None:
    conn.execute(
        text(
            "INSERT INTO gpu_claims (allocation_id, gpu_id, milli, memory_mib, mig_profile, mig_start, "
            "mig_size, mig_compute) VALUES (:a, :g, :m, :mem, :p, :s, :size, :c)"
        ),
        {
            "a": allocation,
            "g": gpu,
            "m": milli,
            "mem": memory,
            "p": profile,
            "s": start,
            "size": size,
            "c": compute,
        },
    )
    if profile is not None and start is not None:
        for slot in range(start, start + size):
            conn.execute(
                text(
                    "INSERT INTO mig_slots (gpu_id, slot, mig_enabled, allocation_id) VALUES (:g, :s, true, :a)"
                ),
                {"g": gpu, "s": slot, "a": allocation},
            )


def counters(engine: Engine, gpu: int) -> tuple[int, int, int]:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT used_milli, used_memory_mib, mig_used_compute FROM gpus WHERE id = :g"),
            {"g": gpu},
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


def test_claims_move_the_counters_and_release_gives_them_back(engine: Engine) -> None:
    with engine.begin() as conn:
        claim(conn, "a0", 1, milli=600, memory=40000)
        claim(conn, "a1", 1, milli=400, memory=41920)
    assert counters(engine, 1) == (1000, 81920, 0)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM gpu_claims WHERE allocation_id = 'a0'"))
    assert counters(engine, 1) == (400, 41920, 0)


@pytest.mark.parametrize(
    ("milli", "memory"), [(1, 41921), (501, 1)], ids=["memory over-commit", "compute over-commit"]
)
def test_over_commit_is_refused(engine: Engine, milli: int, memory: int) -> None:
    with engine.begin() as conn:
        claim(conn, "a0", 1, milli=500, memory=40000)
    with pytest.raises(IntegrityError, match="within_gpu"), engine.begin() as conn:
        claim(conn, "a1", 1, milli=milli, memory=memory)
    assert counters(engine, 1) == (500, 40000, 0), "the failed claim left nothing behind"


def test_overlapping_mig_instances_are_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        claim(conn, "a0", 2, profile="4g.40gb", start=0, size=4, compute=4)
    with pytest.raises(IntegrityError, match="pk_mig_slots"), engine.begin() as conn:
        claim(conn, "a1", 2, profile="2g.20gb", start=2, size=2, compute=2)
    with engine.begin() as conn:
        claim(conn, "a1", 2, profile="3g.40gb", start=4, size=4, compute=3)
    assert counters(engine, 2) == (0, 0, 7)


def test_mig_claim_on_a_full_mode_gpu_is_refused(engine: Engine) -> None:
    with pytest.raises(IntegrityError), engine.begin() as conn:
        claim(conn, "a0", 1, profile="1g.10gb", start=0, size=1, compute=1)


def test_fraction_claim_on_a_mig_gpu_is_refused(engine: Engine) -> None:
    with (
        pytest.raises(IntegrityError, match="mig_gpu_has_no_fraction_claims"),
        engine.begin() as conn,
    ):
        claim(conn, "a0", 2, milli=100, memory=100)


def test_mode_cannot_flip_under_live_claims(engine: Engine) -> None:
    with engine.begin() as conn:
        claim(conn, "a0", 2, profile="1g.10gb", start=0, size=1, compute=1)
        claim(conn, "a1", 1, milli=10, memory=10)
    for gpu, mode in ((2, False), (1, True)):
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(
                text("UPDATE gpus SET mig_enabled = :m WHERE id = :g"), {"m": mode, "g": gpu}
            )


def test_claims_are_immutable(engine: Engine) -> None:
    with engine.begin() as conn:
        claim(conn, "a0", 1, milli=10, memory=10)
    with pytest.raises(ProgrammingError, match="immutable"), engine.begin() as conn:
        conn.execute(text("UPDATE gpu_claims SET milli = 1"))
