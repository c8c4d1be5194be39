"""The chaos run, 30 s of it (bench/chaos.py): two replicas on a PostgreSQL of
its own, six simulated agents with real workers, 16 clients, and kill -9 of
the follower, the leader, an agent and PostgreSQL plus an agent frozen past
its node's grace. Nothing acknowledged may be lost or changed, no GPU double
booked, no request id answered twice differently, no UNKNOWN/INTERNAL status,
no job running on two nodes at once.

It starts its own PostgreSQL (not the test database) and takes about two
minutes; the figures it also prints (reconnect, placement resumed) are the
benchmark's, not asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ZEROS = (
    "lost",
    "double_booked",
    "duplicate_request_ids",
    "unknown_status_count",
    "jobs_running_twice",
)


@pytest.fixture(scope="module")
def chaos_summary() -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "proto")])}
    run = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--seconds", "30", "--seed", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = run.stdout.strip().splitlines()
    assert run.returncode == 0 and lines, (
        f"chaos run failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    )
    summary: dict[str, object] = json.loads(lines[-1])
    print(run.stdout)  # per-fault progress, shown with -s or on failure
    return summary


@pytest.mark.parametrize("figure", ZEROS)
def test_chaos_run_keeps_its_zeros(chaos_summary: dict[str, object], figure: str) -> None:
    evidence = json.dumps(chaos_summary.get("evidence"), indent=1)[:6000]
    assert chaos_summary[figure] == 0, f"{figure} = {chaos_summary[figure]}; evidence: {evidence}"


def test_chaos_run_acknowledged_work(chaos_summary: dict[str, object]) -> None:
    """The run did something: the zeros above are not those of an idle system."""
    assert isinstance(chaos_summary["acknowledged"], int) and chaos_summary["acknowledged"] > 0
    assert len(chaos_summary["faults"]) == 5  # type: ignore[arg-type]
