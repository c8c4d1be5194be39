"""Failover seen from the agents: an agent follows the surviving replica, and
a node cut off from every replica stops its own workers (self-fencing), then
runs them again once a replica answers."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpupool.v1 import scheduler_pb2, types_pb2
from scheduler.app import SchedulerApp
from tests.e2e.conftest import (
    GRACE_S,
    HEARTBEAT_S,
    TIMEOUT_S,
    WORKER_TEMPLATES,
    Cluster,
    free_port,
    wait_for,
)
from tests.integration.conftest import Client
from tests.pki import scheduler_settings

SLEEPER = Path(__file__).parent / "workers" / "sleeper.py"
S = types_pb2


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie counts as gone: it no longer runs anything.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
    return True


@pytest.fixture
def second_replica(cluster: Cluster) -> Iterator[SchedulerApp]:
    settings = scheduler_settings(
        cluster.database_url,
        listen=f"127.0.0.1:{free_port()}",
        agent_listen=f"127.0.0.1:{free_port()}",
        run_loops=True,
        heartbeat_interval_s=HEARTBEAT_S,
        heartbeat_timeout_s=TIMEOUT_S,
        failover_grace_s=GRACE_S,
        worker_templates_file=WORKER_TEMPLATES,
    )
    app = SchedulerApp(settings)
    app.start()
    yield app
    app.stop(grace=0.5)


def test_an_agent_moves_to_the_surviving_replica(
    cluster: Cluster, second_replica: SchedulerApp
) -> None:
    first = cluster.app
    assert first is not None
    both = f"{cluster.agent_address},{second_replica.agent_address}"
    cluster.start_agent("b200", scheduler=both)
    replicas = {"first": first, "second": second_replica}

    def holder() -> str:
        return next((k for k, a in replicas.items() if "b200" in a.agents.connected_nodes()), "")

    wait_for(lambda: bool(holder()), what="the agent to connect to a replica")
    gone = holder()
    survivor = replicas["second" if gone == "first" else "first"]
    if gone == "first":
        cluster.stop_scheduler()
    else:
        second_replica.stop(grace=0.5)
        replicas.pop("second")
    wait_for(
        lambda: "b200" in survivor.agents.connected_nodes(),
        timeout=15,
        what="the agent to reconnect to the surviving replica",
    )


def test_a_node_cut_off_from_every_replica_stops_its_workers(
    cluster: Cluster, tmp_path: Path
) -> None:
    assert cluster.app is not None
    cluster.start_agent("b200")
    wait_for(lambda: cluster.connected(["b200"]), what="the agent to connect")
    client = Client.as_admin(cluster.app)
    request = scheduler_pb2.AllocateRequest(
        tenant="t",
        request_id="fenced",
        whole=S.WholeGpus(count=1),
        gpu_models=["B200"],
        worker=S.WorkerSpec(template="python", args={"script": str(SLEEPER)}),
    )
    allocation = client.scheduler.Allocate(request).allocation
    get = scheduler_pb2.GetAllocationRequest(allocation_id=allocation.id)

    def pids() -> list[int]:
        workers = client.scheduler.GetAllocation(get).allocation.workers
        return [w.pid for w in workers if w.state == S.WORKER_STATE_READY and w.pid]

    wait_for(lambda: bool(pids()), timeout=60, what="the worker to be ready")
    [pid] = pids()
    client.close()
    try:
        cluster.stop_scheduler()  # every replica gone: nobody acknowledges the node
        wait_for(lambda: not _alive(pid), timeout=30, what="the cut-off node to stop its worker")
        log = (tmp_path / "b200.log").read_text()
        assert "self-fencing" in log
        cluster.start_scheduler()
        assert cluster.app is not None
        client = Client.as_admin(cluster.app)
        wait_for(
            lambda: bool(pids()) and pids() != [pid],
            timeout=60,
            what="the worker to run again once a replica answers",
        )
        client.close()
    finally:
        for path in tmp_path.glob("*-workers.json"):
            with contextlib.suppress(Exception):
                import json

                for gang in json.loads(path.read_text()).values():
                    for proc in gang["procs"]:
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(proc["pid"], signal.SIGKILL)
