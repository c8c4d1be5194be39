"""A deployment end to end: real scheduler (loops on a real clock), two
simulated agents as processes, simulated engines (`gpupool engine simulate`)
launched by the agents through deploy/worker-templates.yaml's sim-engine.

Created through the CLI; streaming completions sent straight to the ready
replicas (as the gateway would, from WatchReplicas); it scales up under
load by promoting its standby first, refills the pool, survives its
engine's worker being killed (the agent restarts it; the replica is not
routable meanwhile), scales down by draining, and no request fails.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner

from gpupool.v1 import deployments_pb2 as pb
from gpupool.v1 import deployments_pb2_grpc
from scheduler.cli.main import cli
from scheduler.domain.callers import SYSTEM
from scheduler.domain.worker_templates import DEFAULT_TEMPLATES_FILE
from tests.e2e import conftest as e2e
from tests.e2e.conftest import Cluster, free_port, wait_for
from tests.integration.conftest import Client
from tests.integration.test_deploy_api import clear_deployments
from tests.pki import scheduler_settings

FLEET = """\
nodes:
  - name: h100
    count: 2
    labels: {zone: zone-a, nvlink-domain: node}
    gpus: {model: H100-80GB, count: 4, nvlink: true}
"""
# 64 KV blocks of 16 tokens per engine: a few concurrent requests fill it.
ENGINE_ARGS = "--kv-blocks 64 --max-num-seqs 16"
PROMPT = "Summarise the state of the fleet for the on-call engineer. " * 4  # ~60 tokens
WAIT_S = 90.0


@dataclass
class Load:
    """Streaming completions from `workers` threads to the replicas the watch
    says are ready; counts every request and every failure."""

    stub: deployments_pb2_grpc.DeploymentsStub
    ready: dict[str, str] = field(default_factory=dict)  # replica id -> endpoint
    states: dict[str, int] = field(default_factory=dict)
    seen_states: dict[str, set[int]] = field(default_factory=dict)
    workers: int = 0
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def watch(self) -> None:
        call = self.stub.WatchReplicas(pb.WatchReplicasRequest(deployment="chat"))
        with contextlib.suppress(grpc.RpcError):
            for event in call:
                if self._stop.is_set():
                    return
                if not event.HasField("replica"):
                    continue
                replica = event.replica
                with self._lock:
                    self.states[replica.id] = replica.state
                    self.seen_states.setdefault(replica.id, set()).add(replica.state)
                    if replica.state == pb.REPLICA_STATE_READY and replica.endpoint:
                        self.ready[replica.id] = replica.endpoint
                    else:
                        self.ready.pop(replica.id, None)

    def start_watching(self) -> None:
        self._spawn(self.watch)

    def set_workers(self, count: int) -> None:
        while self.workers < count:
            self.workers += 1
            self._spawn(self._client, self.workers)
        self.workers = count  # extra threads see it and leave

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _client(self, number: int) -> None:
        while not self._stop.is_set() and number <= self.workers:
            with self._lock:
                endpoints = list(self.ready.values())
            if not endpoints:
                time.sleep(0.05)
                continue
            endpoint = random.choice(endpoints)
            with self._lock:
                self.sent += 1
            error = _stream_completion(endpoint)
            if error:
                with self._lock:
                    self.failures.append(f"{endpoint}: {error}")

    def count(self, state: int) -> int:
        with self._lock:
            return sum(1 for s in self.states.values() if s == state)

    def stop(self) -> None:
        self._stop.set()
        self.workers = 0
        for thread in self._threads:
            thread.join(timeout=15)


def _stream_completion(endpoint: str) -> str:
    """ "" when the stream ended with [DONE] after 24 tokens, else the error."""
    host, port = endpoint.rsplit(":", 1)
    assert host in ("127.0.0.1", "localhost"), "load goes to loopback only"
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    body = {"model": "llama-3.1-8b", "prompt": PROMPT, "max_tokens": 24, "stream": True}
    try:
        connection.request("POST", "/v1/completions", json.dumps(body))
        response = connection.getresponse()
        if response.status != 200:
            return f"HTTP {response.status}: {response.read()[:200]!r}"
        tokens, done = 0, False
        for raw in response:
            line = raw.decode().strip()
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                tokens += bool(json.loads(line[6:])["choices"][0]["text"])
        return "" if done and tokens == 24 else f"stream ended after {tokens} tokens"
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()


def _kill_engines(state_dir: Path) -> None:
    """Agents leave workers running for the next agent to adopt; tests clean up."""
    for path in state_dir.glob("*-workers.json"):
        for gang in json.loads(path.read_text()).values():
            for proc in gang["procs"]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc["pid"], signal.SIGKILL)


@pytest.fixture
def serving_cluster(
    clean_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cluster]:
    clear_deployments(clean_database)
    base = free_port()  # a random range: other test runs on this host use theirs
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(FLEET)

    def settings(url: str, **overrides: Any) -> Any:
        overrides.update(deployment_loop_s=0.5, engine_ports=(base, base + 40))
        return scheduler_settings(url, **overrides)

    monkeypatch.setattr(e2e, "scheduler_settings", settings)
    cluster = Cluster(
        clean_database,
        f"127.0.0.1:{free_port()}",
        tmp_path,
        fleet=fleet,
        worker_templates=DEFAULT_TEMPLATES_FILE,
    )
    cluster.start_scheduler()
    try:
        yield cluster
    finally:
        cluster.stop()
        _kill_engines(tmp_path)
        clear_deployments(clean_database)


def _run(client: Client, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [*client.cli_args(), *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def _gpupool(client: Client, *args: str) -> str:
    code, output = _run(client, *args)
    assert code == 0, output
    return output


def test_a_deployment_scales_promotes_survives_a_killed_worker_and_drains(
    serving_cluster: Cluster,
) -> None:
    cluster = serving_cluster
    assert cluster.app is not None
    app = cluster.app
    for node in ("h100-0", "h100-1"):
        cluster.start_agent(node)
    wait_for(lambda: cluster.connected(["h100-0", "h100-1"]), what="agents to connect")
    client = Client.as_admin(app)
    stub = deployments_pb2_grpc.DeploymentsStub(client.channel)
    load = Load(stub)
    try:
        _gpupool(
            client,
            "deploy", "create", "chat", "--tenant", "team-a", "--model", "llama-3.1-8b",
            "--variant", "fp16:H100-80GB", "--min", "1", "--max", "3", "--standby", "1",
            "--target-kv", "0.5", "--scale-up", "2/2/2", "--scale-down", "6/1/3",
            "--metrics-window", "4",
            "--engine-arg", f"extra_args={ENGINE_ARGS}",
        )  # fmt: skip
        load.start_watching()
        wait_for(
            lambda: (
                load.count(pb.REPLICA_STATE_READY) == 1
                and load.count(pb.REPLICA_STATE_STANDBY) == 1
            ),
            WAIT_S,
            "one ready replica and one warm standby",
        )
        standby = next(i for i, s in load.states.items() if s == pb.REPLICA_STATE_STANDBY)

        # Heavy load: KV use far above 0.5 → the standby is promoted, the pool refilled.
        load.set_workers(10)
        wait_for(
            lambda: pb.REPLICA_STATE_READY in load.seen_states.get(standby, set()),
            WAIT_S,
            "the standby replica to be promoted",
        )
        wait_for(
            lambda: (
                load.count(pb.REPLICA_STATE_READY) >= 2
                and load.count(pb.REPLICA_STATE_STANDBY) >= 1
            ),
            WAIT_S,
            "two or more ready replicas and a refilled standby pool",
        )
        load.set_workers(0)
        time.sleep(1.0)  # in-flight requests finish

        # Kill one ready replica's engine: it is not routable until the agent restarted it.
        deployment = stub.Get(pb.GetDeploymentRequest(name="chat")).deployment
        victim = next(r for r in deployment.replicas if r.state == pb.REPLICA_STATE_READY)
        allocation = app.allocations.get(SYSTEM, victim.allocation_id)
        pid = int(allocation.workers[0]["pid"])
        os.kill(pid, signal.SIGKILL)
        wait_for(
            lambda: load.states.get(victim.id) == pb.REPLICA_STATE_STARTING,
            WAIT_S,
            "the killed replica to leave the ready set",
        )
        wait_for(
            lambda: load.states.get(victim.id) == pb.REPLICA_STATE_READY,
            WAIT_S,
            "the killed replica's engine to be restarted and ready",
        )

        # Light load: scale down by draining, never below one ready replica.
        load.set_workers(1)
        wait_for(
            lambda: any(pb.REPLICA_STATE_DRAINING in s for s in load.seen_states.values()),
            WAIT_S,
            "a replica to drain",
        )
        wait_for(
            lambda: (
                load.count(pb.REPLICA_STATE_READY) == 1
                and load.count(pb.REPLICA_STATE_DRAINING) == 0
            ),
            WAIT_S,
            "the deployment to be back at one ready replica",
        )
        load.set_workers(0)
        time.sleep(1.0)

        _gpupool(client, "deploy", "history", "chat")
        events = stub.History(pb.DeploymentHistoryRequest(name="chat", limit=1000)).events
        told = [e.message for e in events]
        assert any(e.kind == "decision" and e.to_replicas > e.from_replicas for e in events)
        assert any(e.kind == "decision" and e.to_replicas < e.from_replicas for e in events)
        assert f"replica {victim.id} not serving: engine restarting" in told, told
        assert any(m.startswith(f"replica {victim.id} ready again") for m in told), told
        out = _gpupool(client, "deploy", "get", "chat")
        assert "ready" in out and "H100-80GB" in out
        assert load.sent > 20, f"only {load.sent} requests sent"
        assert load.failures == [], load.failures[:5]

        _gpupool(client, "deploy", "delete", "chat")
        wait_for(
            lambda: not app.deployments.list_all(SYSTEM, "team-a", False),
            WAIT_S,
            "the deleted deployment's replicas to be released",
        )
    except AssertionError as exc:
        shown = [_run(client, "deploy", command, "chat")[1] for command in ("get", "history")]
        raise AssertionError("\n".join([str(exc), *shown])) from exc
    finally:
        load.stop()
        client.close()
