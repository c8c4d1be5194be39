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

from gpupool.v1 import admin_pb2, scheduler_pb2, types_pb2
from scheduler.app import SchedulerApp
from tests.e2e.conftest import (
    GRACE_S,
    HEARTBEAT_S,
    TIMEOUT_S,
    WORKER_TEMPLATES,
    Cluster,
    free_port,
    kill_workers,
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
        kill_workers(tmp_path)


def test_any_replica_reaches_any_agent(
    cluster: Cluster, second_replica: SchedulerApp, tmp_path: Path
) -> None:
    """Faults and logs asked of a replica the agent does not stream to are
    relayed to the one it does."""
    cluster.start_agent("b200")  # to the first replica only
    wait_for(lambda: cluster.connected(["b200"]), what="the agent to connect")
    assert "b200" not in second_replica.agents.connected_nodes()
    other = Client.as_admin(second_replica)
    try:
        other.admin.InjectFault(
            admin_pb2.InjectFaultRequest(node="b200", gpu_index=2, fault="xid=79")
        )

        def health() -> int:
            gpus = other.admin.ListGpus(admin_pb2.ListGpusRequest(node="b200")).gpus
            return next(g.health for g in gpus if g.index == 2)

        wait_for(lambda: health() == S.GPU_HEALTH_UNHEALTHY, what="the relayed fault to land")

        request = scheduler_pb2.AllocateRequest(
            tenant="t",
            request_id="logged",
            whole=S.WholeGpus(count=1),
            gpu_models=["B200"],
            worker=S.WorkerSpec(template="python", args={"script": str(SLEEPER)}),
        )
        allocation = other.scheduler.Allocate(request).allocation
        get = scheduler_pb2.GetAllocationRequest(allocation_id=allocation.id)
        wait_for(
            lambda: any(
                w.state == S.WORKER_STATE_READY
                for w in other.scheduler.GetAllocation(get).allocation.workers
            ),
            timeout=60,
            what="the worker to be ready",
        )
        logs = admin_pb2.WorkerLogsRequest(allocation_id=allocation.id, rank=0)
        text = b"".join(c.data for c in other.admin.WorkerLogs(logs, timeout=30)).decode()
        assert "READY" in text
    finally:
        other.close()
        kill_workers(tmp_path)


def test_a_frozen_agents_workers_stop_before_their_work_moves(
    cluster: Cluster, tmp_path: Path
) -> None:
    """SIGSTOP freezes the agent but not its workers; the node's fence guard
    stops them once the agent's lease runs out, before the scheduler places
    the work on another node: at no moment does it run on both."""
    assert cluster.app is not None
    nodes = ["h100-sxm-0", "h100-sxm-1"]
    for node in nodes:
        cluster.start_agent(node)
    wait_for(lambda: cluster.connected(nodes), what="the agents to connect")
    client = Client.as_admin(cluster.app)
    request = scheduler_pb2.AllocateRequest(
        tenant="t",
        request_id="frozen",
        whole=S.WholeGpus(count=1),
        gpu_models=["H100-80GB"],
        worker=S.WorkerSpec(template="python", args={"script": str(SLEEPER)}),
    )
    allocation = client.scheduler.Allocate(request).allocation
    get = scheduler_pb2.GetAllocationRequest(allocation_id=allocation.id)

    def ready() -> list[tuple[str, int]]:
        current = client.scheduler.GetAllocation(get).allocation
        return [
            (current.bindings[0].node, w.pid)
            for w in current.workers
            if w.state == S.WORKER_STATE_READY and w.pid
        ]

    wait_for(lambda: bool(ready()), timeout=60, what="the worker to be ready")
    [(frozen, pid)] = ready()
    agent = cluster.agents[frozen]
    os.kill(agent.pid, signal.SIGSTOP)
    try:
        overlaps = []

        def moved_and_running() -> bool:
            now = ready()
            if now and now[0][0] != frozen:
                if _alive(pid):
                    overlaps.append(now)
                return True
            return False

        wait_for(moved_and_running, timeout=60, what="the work to run on the other node")
        assert not _alive(pid), "the frozen node's worker was stopped"
        assert overlaps == [], "the old worker still ran when the new one was ready"
        assert "lease ran out" in (tmp_path / f"{frozen}-guard.log").read_text()
    finally:
        os.kill(agent.pid, signal.SIGCONT)
        client.close()
        kill_workers(tmp_path)
