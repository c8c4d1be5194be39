"""End-to-end fixtures: a scheduler with its loops running on a real clock,
and simulated agents as separate processes (`gpupool agent run --simulate`)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from scheduler.app import SchedulerApp
from tests.integration.conftest import MIXED_FLEET, Client
from tests.pki import scheduler_settings, session_pki

# Short periods so failures show within seconds (production: 2 s / 10 s / 30 s),
# with a timeout of ten heartbeats so a busy CI machine does not look like a dead node.
HEARTBEAT_S = 0.3
TIMEOUT_S = 3.0
GRACE_S = 1.0
# The worker templates of the tests: scripts under tests/e2e/workers (and
# tests/gpu), run by the python3 first on the agent's PATH (this interpreter's).
WORKER_TEMPLATES = Path(__file__).parent / "workers" / "templates.yaml"


def agent_env() -> dict[str, str]:
    """The agent's environment: this interpreter's directory first on PATH,
    so a template's fixed `python3` is the one that has the test's packages."""
    here = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": os.pathsep.join([here, os.environ.get("PATH", "")])}


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def kill_workers(state_dir: Path) -> None:
    """Agents leave workers running for the next agent to adopt; tests clean up."""
    for path in state_dir.glob("*-workers.json"):
        for gang in json.loads(path.read_text()).values():
            for proc in gang["procs"]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc["pid"], signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    database_url: str
    address: str
    state_dir: Path
    app: SchedulerApp | None = None
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    fleet: Path = MIXED_FLEET
    rendezvous_ports: tuple[int, int] = (29500, 29999)
    agent_address: str = field(default_factory=lambda: f"127.0.0.1:{free_port()}")
    worker_templates: Path = WORKER_TEMPLATES
    # The failover grace: also how long a node's workers outlive a dead agent
    # before its fence guard stops them (grace + timeout / 2).
    grace_s: float = GRACE_S

    def start_scheduler(self) -> SchedulerApp:
        settings = scheduler_settings(
            self.database_url,
            listen=self.address,
            agent_listen=self.agent_address,
            run_loops=True,
            heartbeat_interval_s=HEARTBEAT_S,
            heartbeat_timeout_s=TIMEOUT_S,
            failover_grace_s=self.grace_s,
            rendezvous_ports=self.rendezvous_ports,
            worker_templates_file=self.worker_templates,
        )
        self.app = SchedulerApp(settings)
        self.app.start()
        return self.app

    def stop_scheduler(self) -> None:
        assert self.app is not None
        self.app.stop(grace=0.5)
        self.app = None

    def start_agent(self, node: str, scheduler: str = "") -> None:
        """scheduler: what the agent dials (default: this cluster's agent port)."""
        command = [
            sys.executable, "-m", "scheduler.cli.main", "agent", "run",
            "--scheduler", scheduler or self.agent_address,
            *session_pki().agent_args(node),
            "--simulate", str(self.fleet),
            "--node", node,
            "--state-dir", str(self.state_dir),
            "--worker-templates", str(self.worker_templates),
        ]  # fmt: skip
        log = (self.state_dir / f"{node}.log").open("ab")
        self.agents[node] = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=agent_env()
        )

    def kill_agent(self, node: str) -> None:
        process = self.agents.pop(node)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def connected(self, nodes: list[str]) -> bool:
        return self.app is not None and set(nodes) <= set(self.app.agents.connected_nodes())

    def running(self, node: str) -> set[str]:
        """What the agent's state file says it runs."""
        path = self.state_dir / f"{node}.json"
        if not path.exists():
            return set()
        return set(json.loads(path.read_text())["running"])

    def stop(self) -> None:
        for process in self.agents.values():
            process.terminate()
        for process in self.agents.values():
            process.wait(timeout=15)
        if self.app is not None:
            self.stop_scheduler()


@pytest.fixture
def cluster(clean_database: str, tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(clean_database, f"127.0.0.1:{free_port()}", tmp_path)
    cluster.start_scheduler()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def client(cluster: Cluster) -> Iterator[Client]:
    assert cluster.app is not None
    c = Client.as_admin(cluster.app)
    yield c
    c.close()
