"""The node's fence guard: it stops recorded workers once the agent's lease
runs out, leaves them alone while the lease is renewed, and exits when there
is nothing left to guard."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.workers import fence_guard
from agent.workers.fence_guard import ensure_guard, write_lease
from agent.workers.process import start_ticks
from tests.e2e.conftest import wait_for


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    wait_for(lambda: start_ticks(process.pid) is not None, what="the worker to start")
    record = {"pid": process.pid, "ticks": start_ticks(process.pid)}
    (tmp_path / "n-workers.json").write_text(json.dumps({"a-1": {"procs": [record]}}))
    yield process
    process.kill()
    process.wait()


def test_an_expired_lease_stops_the_workers(
    tmp_path: Path, worker: subprocess.Popen[bytes]
) -> None:
    write_lease(tmp_path, "n", time.monotonic() + 0.5, kill_after_s=0.5)
    ensure_guard(tmp_path, "n")
    ensure_guard(tmp_path, "n")  # one guard per node
    wait_for(lambda: worker.poll() is not None, what="the guard to stop the worker")
    assert worker.returncode == -15, "SIGTERM first"
    log = (tmp_path / "n-guard.log").read_text()
    assert log.count("lease ran out") == 1


def test_a_renewed_lease_keeps_them_running(
    tmp_path: Path, worker: subprocess.Popen[bytes]
) -> None:
    write_lease(tmp_path, "n", time.monotonic() + 1.0, kill_after_s=0.5)
    ensure_guard(tmp_path, "n")
    until = time.monotonic() + 2.5
    while time.monotonic() < until:
        write_lease(tmp_path, "n", time.monotonic() + 1.0, kill_after_s=0.5)
        time.sleep(0.2)
    assert worker.poll() is None


def test_the_guard_exits_with_nothing_to_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fence_guard, "IDLE_EXIT_S", 0.3)
    (tmp_path / "n-workers.json").write_text("{}")
    fence_guard.guard(tmp_path, "n")  # returns instead of watching forever
