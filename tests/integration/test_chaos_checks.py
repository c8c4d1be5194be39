"""The chaos run's checks find what they are meant to (bench/support/chaos_checks.py):
a benchmark that can only say zero proves nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.support.chaos_checks import ClientLogs, check_acknowledged, check_gpus
from scheduler.store.database import libpq_url

ROW = (
    "INSERT INTO allocations (id, tenant, request_id, request_hash, kind, gpu_count, milli, "
    "memory_mib, mig_profile, gpu_models, priority_class, priority, workload_class, model, "
    "labels, state, pending_reasons, unschedulable, bindings, message, node, created_at, "
    "updated_at, event_count) VALUES (%s, 't', %s, 'h', 'whole', 1, 0, 0, '', '[]', 'normal', "
    "50, 'unspecified', '', '{}', %s, '[]', false, '[]', '', '', now(), now(), 0)"
)


def _log(directory: Path, *entries: dict[str, Any]) -> ClientLogs:
    lines = [json.dumps({"t": 0.0, "client": 0, "attempt": 0, **e}) for e in entries]
    (directory / "client-0.jsonl").write_text("\n".join(lines) + "\n")
    return ClientLogs.read(directory)


def _ok(key: str, allocation_id: str, state: str = "ALLOCATION_STATE_PENDING") -> dict[str, Any]:
    return {
        "rpc": "Allocate",
        "key": key,
        "code": "OK",
        "allocation_id": allocation_id,
        "state": state,
    }


def test_client_logs_count_unknown_statuses_and_second_answers(tmp_path: Path) -> None:
    logs = _log(
        tmp_path,
        _ok("t/r1", "a-1"),
        _ok("t/r1", "a-2"),  # a retry answered with another allocation
        {"rpc": "Release", "key": "a-1", "code": "INTERNAL", "message": "boom"},
        {"rpc": "Watch", "key": "a-1", "code": "DEADLINE_EXCEEDED", "message": ""},
        {"rpc": "Allocate", "key": "t/r2", "code": "UNAVAILABLE", "message": "port 55432"},
    )
    assert logs.duplicate_request_ids() == {"t/r1": ["a-1", "a-2"]}
    assert [e["rpc"] for e in logs.unknown()] == ["Release"]
    assert [e["key"] for e in logs.leaky(55432)] == ["t/r2"]


@pytest.fixture
def conn(clean_database: str) -> Any:
    with psycopg.connect(libpq_url(clean_database), autocommit=True) as c:
        yield c


def test_acknowledged_work_missing_or_changed_is_lost(conn: Any, tmp_path: Path) -> None:
    conn.execute(ROW, ("a-kept", "r1", "pending"))
    conn.execute(ROW, ("a-released", "r2", "released"))  # nobody released it
    conn.execute(ROW, ("a-unreleased", "r3", "pending"))  # its release was acknowledged
    conn.execute(ROW, ("a-placed", "r5", "pending"))  # answered PLACED, never placed
    logs = _log(
        tmp_path,
        _ok("t/r1", "a-kept"),
        _ok("t/r2", "a-released"),
        _ok("t/r3", "a-unreleased"),
        {
            "rpc": "Release",
            "key": "a-unreleased",
            "code": "OK",
            "allocation_id": "a-unreleased",
            "state": "ALLOCATION_STATE_RELEASED",
        },
        _ok("t/r4", "a-missing"),
        _ok("t/r5", "a-placed", "ALLOCATION_STATE_PLACED"),
    )
    lost = {e["allocation_id"]: e["why"] for e in check_acknowledged(conn, logs)}
    assert set(lost) == {"a-released", "a-unreleased", "a-missing", "a-placed"}
    assert "missing" in lost["a-missing"]


def test_gpu_checks_see_claims_of_allocations_that_hold_nothing(conn: Any) -> None:
    conn.execute(
        "INSERT INTO nodes (id, name, hostname, labels, admin_state, reachable) "
        "OVERRIDING SYSTEM VALUE VALUES (1, 'n1', 'n1', '{}', 'active', true)"
    )
    conn.execute(
        "INSERT INTO gpus (id, node_id, uuid, index, model, memory_mib, mig_enabled, health, "
        "health_reasons, nvlink_peers, pci_bus_id, used_milli, used_memory_mib, "
        "mig_used_compute) OVERRIDING SYSTEM VALUE VALUES (1, 1, 'GPU-1', 0, 'A100-80GB', "
        "81920, false, 'healthy', '[]', '[]', '', 0, 0, 0)"
    )
    conn.execute(ROW, ("a-gone", "r1", "released"))
    conn.execute(
        "INSERT INTO gpu_claims (allocation_id, gpu_id, milli, memory_mib, mig_size, "
        "mig_compute) VALUES ('a-gone', 1, 1000, 81920, 0, 0)"
    )
    found = check_gpus(conn)
    assert found["stale_claims"] == ["gpu 1: a-gone is released"]
    assert all(not v for k, v in found.items() if k != "stale_claims")
