"""The processes of a chaos run: scheduler replicas (`gpupool serve`) and
simulated agents (`gpupool agent run --simulate`), each started again after
its fault, and every process the run started found again by a marker in
its environment (workers inherit their agent's), so that none outlives it.

The fleet: six simulated nodes of four GPUs (one A100-40GB node in MIG mode),
and a worker template that runs `sleep`, so every placed allocation has real
worker processes on its node.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.harness import BenchPki
from scheduler.security.channels import ClientCredentials, channel_ready

RUN_MARKER = "GPUPOOL_CHAOS_RUN"  # in every process the run starts, workers included
NODE_MARKER = "GPUPOOL_CHAOS_NODE"  # the agent a process belongs to (its workers inherit it)
NODES = ("h100-0", "h100-1", "h100-2", "h200-0", "h200-1", "a100-mig-0")
FLEET = {
    "nodes": [
        {
            "name": "h100",
            "count": 3,
            "labels": {"zone": "zone-a"},
            "gpus": {"model": "H100-80GB", "count": 4, "nvlink": True},
        },
        {
            "name": "h200",
            "count": 2,
            "labels": {"zone": "zone-b"},
            "gpus": {"model": "H200", "count": 4, "nvlink": True},
        },
        {
            "name": "a100-mig",
            "count": 1,
            "labels": {"zone": "zone-c"},
            "gpus": {"model": "A100-40GB", "count": 4, "mig": True},
        },
    ]
}
# How replicas and agents are started (the gpupool CLI of this checkout).
GPUPOOL = [sys.executable, "-m", "scheduler.cli.main"]
AGENT_COMMAND = GPUPOOL
WORKER_TEMPLATE = "chaos-sleep"
TEMPLATES = {
    "templates": {
        WORKER_TEMPLATE: {
            "launch": "per_node",
            "command": ["sleep", "100000"],
            "args": {},
            "env_allow": [],
            "readiness": {"kind": "none"},
            "restart": {"max_restarts": 3, "backoff_s": 1, "max_backoff_s": 5},
            "stop_timeout_s": 2,
        }
    }
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Timings:
    """Liveness settings of the replicas (serve's flags, where it has them)."""

    heartbeat_s: float = 0.5
    node_timeout_s: float = 3.0
    node_grace_s: float = 4.0
    lease_ttl_s: float = 3.0

    def flags(self, available: str) -> list[str]:
        wanted = {
            "--heartbeat-interval": self.heartbeat_s,
            "--node-timeout": self.node_timeout_s,
            "--node-grace": self.node_grace_s,
            "--leader-lease-ttl": self.lease_ttl_s,
        }
        return [x for flag, v in wanted.items() if flag in available for x in (flag, str(v))]


@dataclass
class Member:
    """One process of the run that a fault may kill, freeze and restart."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.poll() is None else None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"--- chaos: start {self.starts} at {time.time():.3f} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the terminal reaches only chaos.py
            )
        self.starts += 1

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signum)

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)


@dataclass
class Replica(Member):
    address: str = ""
    agent_address: str = ""


@dataclass
class Cluster:
    directory: Path
    database_url: str
    run_id: str
    timings: Timings = field(default_factory=Timings)
    pki: BenchPki = field(init=False)
    replicas: list[Replica] = field(default_factory=list)
    agents: dict[str, Member] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pki = BenchPki.create(self.directory / "pki")
        self.fleet_file = self.directory / "fleet.yaml"
        self.fleet_file.write_text(yaml.safe_dump(FLEET))
        self.templates_file = self.directory / "worker-templates.yaml"
        self.templates_file.write_text(yaml.safe_dump(TEMPLATES))

    def base_env(self) -> dict[str, str]:
        here = str(Path(sys.executable).parent)
        path = os.pathsep.join([here, os.environ.get("PATH", "")])
        return {**os.environ, "PATH": path, RUN_MARKER: self.run_id}

    def add_replicas(self, count: int) -> None:
        help_text = subprocess.run(
            [*GPUPOOL, "serve", "--help"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for i in range(count):
            address, agent_address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
            argv = [
                *GPUPOOL,
                "serve",
                "--listen",
                address,
                "--agent-listen",
                agent_address,
                "--data-dir",
                str(self.directory / f"replica-{i}"),
                "--worker-templates",
                str(self.templates_file),
                *self.pki.server_args(),
                *self.timings.flags(help_text),
            ]
            env = {**self.base_env(), "GPUPOOL_DATABASE_URL": self.database_url}
            log = self.directory / f"replica-{i}.log"
            self.replicas.append(
                Replica(f"replica-{i}", argv, env, log, None, 0, address, agent_address)
            )

    @property
    def agent_target(self) -> str:
        """Every replica's agent port, as one gRPC target."""
        return "ipv4:" + ",".join(r.agent_address for r in self.replicas)

    @property
    def api_target(self) -> str:
        return "ipv4:" + ",".join(r.address for r in self.replicas)

    def agent_state_dir(self, node: str) -> Path:
        return self.directory / "agents" / node

    def add_agents(self) -> None:
        for node in NODES:
            cert_dir = self.directory / "pki" / "agents"
            key, cert = self.pki.agent(node).certificate.write(cert_dir, node)  # type: ignore[union-attr]
            argv = [
                *AGENT_COMMAND,
                "agent",
                "run",
                "--scheduler",
                self.agent_target,
                "--ca-cert",
                str(self.pki.directory / "ca.crt"),
                "--cert",
                str(cert),
                "--key",
                str(key),
                "--simulate",
                str(self.fleet_file),
                "--node",
                node,
                "--state-dir",
                str(self.agent_state_dir(node)),
                "--worker-templates",
                str(self.templates_file),
            ]
            env = {**self.base_env(), NODE_MARKER: node}
            self.agents[node] = Member(
                f"agent {node}", argv, env, self.directory / f"agent-{node}.log"
            )

    def start_replica(self, replica: Replica, timeout: float = 90.0) -> bool:
        """Start it and wait until its API answers (False: it did not)."""
        replica.start()
        return self.serving(replica, timeout)

    def serving(self, replica: Replica, timeout: float) -> bool:
        reach = ClientCredentials(ca_pem=self.pki.ca.cert_pem)
        return replica.pid is not None and channel_ready(replica.address, reach, timeout=timeout)

    def members(self) -> list[Member]:
        return [*self.replicas, *self.agents.values()]

    def kill_everything(self) -> None:
        """SIGCONT then SIGKILL every process of this run: replicas, agents,
        their workers and the client process, found by the run's marker."""
        for member in self.members():
            member.signal(signal.SIGCONT)
            member.kill9()
        for pid in marked_processes(self.run_id):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)


def read_environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    out = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


def marked_processes(run_id: str) -> list[int]:
    """Pids of live processes carrying this run's marker (never this process)."""
    needle = f"{RUN_MARKER}={run_id}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in Path(f"/proc/{entry.name}/environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found
