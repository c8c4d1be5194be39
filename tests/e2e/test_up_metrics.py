"""`gpupool up` serves Prometheus metrics: the scheduler's and each simulated
agent's (dcgm-exporter names), scraped over HTTP and checked by name."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import wait_for

FLEET = """\
nodes:
  - name: h100
    labels: {zone: zone-a}
    gpus: {model: H100-80GB, count: 2, nvlink: true}
  - name: mig
    labels: {zone: zone-b}
    gpus: {model: A100-40GB, count: 1, mig: true}
"""
SCHEDULER_METRICS = {
    "gpupool_allocations",
    "gpupool_pending_allocations",
    "gpupool_pending_oldest_age_seconds",
    "gpupool_pending_by_plugin",
    "gpupool_free_whole_gpus",
    "gpupool_free_milli",
    "gpupool_free_memory_mib",
    "gpupool_free_mig_slices",
    "gpupool_nodes",
    "gpupool_leader",
    "gpupool_connected_agents",
    "gpupool_api_request_duration_seconds",
    "gpupool_allocator_batch_commands",
    "gpupool_allocator_batch_duration_seconds",
    "gpupool_preemptions",
    "gpupool_database_errors",
    "gpupool_scrape_errors",
}
AGENT_METRICS = {
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "DCGM_FI_DEV_XID_ERRORS",
    "gpupool_worker_restarts",
}


def scrape(address: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        family.name: [(s.name, s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


def env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "400", "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def up(clean_database: str, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """`gpupool up` on the test database; yields (its directory, metrics address)."""
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(FLEET)
    banner = tmp_path / "banner.txt"
    with banner.open("wb") as out:
        command = [
            sys.executable, "-m", "scheduler.cli.main", "up",
            "--database-url", clean_database,
            "--fleet", str(fleet),
            "--listen", "127.0.0.1:0",
            "--agent-listen", "127.0.0.1:0",
            "--metrics-listen", "127.0.0.1:0",
        ]  # fmt: skip
        process = subprocess.Popen(
            command,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env(),
        )
    try:
        wait_for(
            lambda: "gpupool is up" in banner.read_text() or process.poll() is not None,
            timeout=90,
            what="gpupool up",
        )
        text = banner.read_text()
        assert process.poll() is None, text
        assert "WARNING" not in text, "the scheduler logs to its file, not over the banner"
        found = re.search(r"metrics on http://(\S+)/metrics", text)
        assert found, text
        yield tmp_path, found.group(1)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def gpupool(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "scheduler.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def agent_metrics_address(logs: Path, node: str) -> str | None:
    path = logs / f"agent-{node}.log"
    if not path.exists():
        return None
    found = re.search(r"metrics on http://(\S+)/metrics", path.read_text())
    return found.group(1) if found else None


def test_up_serves_scheduler_and_agent_metrics(up: tuple[Path, str]) -> None:
    home, address = up
    gpupool(home, "allocate", "--tenant", "demo", "--request-id", "w", "--whole", "1")
    # Waits (one H100 is left), and could be placed once one frees: not unschedulable.
    gpupool(home, "allocate", "--tenant", "demo", "--request-id", "two", "--whole", "2")
    # The agents may still be (re)connecting on a busy machine: wait for both streams.
    wait_for(
        lambda: sum(v for _, _, v in scrape(address)["gpupool_connected_agents"]) == 2,
        what="both agents connected",
    )
    metrics = scrape(address)
    assert set(metrics) >= SCHEDULER_METRICS, sorted(SCHEDULER_METRICS - set(metrics))

    def value(family: str, **labels: str) -> float:
        samples = metrics[family]
        return sum(v for _, got, v in samples if all(got.get(k) == x for k, x in labels.items()))

    assert value("gpupool_allocations", state="placed", tenant="demo", kind="whole") == 1
    assert value("gpupool_allocations", state="pending", tenant="demo", kind="whole") == 1
    assert value("gpupool_pending_allocations") == 1
    assert value("gpupool_free_whole_gpus", gpu_model="H100-80GB") == 1
    assert value("gpupool_free_mig_slices", gpu_model="A100-40GB") == 7
    assert value("gpupool_leader") == 1
    assert value("gpupool_connected_agents") == 2
    assert value("gpupool_pending_by_plugin") >= 1
    allocate_calls = [
        v
        for name, labels, v in metrics["gpupool_api_request_duration_seconds"]
        if name.endswith("_count") and labels.get("method") == "Scheduler/Allocate"
    ]
    assert allocate_calls == [2.0]
    assert value("gpupool_allocator_batch_commands") > 0

    logs = home / ".gpupool" / "logs"
    wait_for(lambda: agent_metrics_address(logs, "h100") is not None, what="agent metrics")
    agent_address = agent_metrics_address(logs, "h100")
    assert agent_address is not None
    gpus = scrape(agent_address)
    assert set(gpus) >= AGENT_METRICS, sorted(AGENT_METRICS - set(gpus))
    temps = gpus["DCGM_FI_DEV_GPU_TEMP"]
    assert len(temps) == 2
    labels = temps[0][1]
    assert set(labels) == {"gpu", "UUID", "device", "modelName", "Hostname"}
    assert labels["UUID"].startswith("GPU-") and labels["Hostname"] == "h100"
    # The scheduler logs to its file: a line per state change, no APScheduler chatter.
    log = (logs / "scheduler.log").read_text()
    assert "allocation a-" in log and "-> placed" in log
    assert "Running job" not in log
