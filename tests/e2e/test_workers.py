"""Workers launched through running agents: a Megatron-style TP MLP
(tests/e2e/workers/tp_mlp.py) on torch.distributed/gloo, CPU only.

Real scheduler, real `gpupool agent run --simulate` processes, real worker
processes finding each other through the environment the agents give them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gpupool.v1 import admin_pb2, scheduler_pb2, types_pb2
from tests.e2e.conftest import Cluster, free_port, kill_workers, wait_for
from tests.integration.conftest import Client

pytest.importorskip("torch")

WORKERS = Path(__file__).parent / "workers"
SCRIPT = WORKERS / "tp_mlp.py"
S = types_pb2
# Worker runs start torch (seconds each on a busy CI machine): generous waits.
WAIT_S = 120.0


@pytest.fixture
def workers_cluster(clean_database: str, tmp_path: Path) -> Iterator[Cluster]:
    base = free_port()  # a random range: other test runs on this host use theirs
    cluster = Cluster(
        clean_database,
        f"127.0.0.1:{free_port()}",
        tmp_path,
        rendezvous_ports=(base, base + 20),
        # An agent killed here is restarted and adopts its workers: its node
        # must not fence them first, however slowly a busy machine restarts it.
        grace_s=30.0,
    )
    cluster.start_scheduler()
    try:
        yield cluster
    finally:
        cluster.stop()
        kill_workers(tmp_path)


@pytest.fixture
def client(workers_cluster: Cluster) -> Iterator[Client]:
    assert workers_cluster.app is not None
    c = Client.as_admin(workers_cluster.app)
    yield c
    c.close()


def _worker(tmp_path: Path, steps: int, step_seconds: float = 0.0) -> S.WorkerSpec:
    script_args = (
        f"--steps {steps} --step-seconds {step_seconds} "
        f"--out {tmp_path / 'out'} --checkpoint-dir {tmp_path / 'checkpoints'}"
    )
    return S.WorkerSpec(template="python", args={"script": str(SCRIPT), "script_args": script_args})


def _allocate(
    client: Client, request_id: str, worker: S.WorkerSpec, **fields: object
) -> S.Allocation:
    request = scheduler_pb2.AllocateRequest(
        tenant="t",
        request_id=request_id,
        worker=worker,
        **fields,  # type: ignore[arg-type]
    )
    return client.scheduler.Allocate(request).allocation


def _get(client: Client, allocation_id: str) -> S.Allocation:
    request = scheduler_pb2.GetAllocationRequest(allocation_id=allocation_id)
    return client.scheduler.GetAllocation(request).allocation


def _reference(steps: int, pp: int = 1) -> list[list[float]]:
    command = [sys.executable, str(SCRIPT), "--single", "--steps", str(steps), "--pp", str(pp)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return list(json.loads(output)["x"])


def _result(tmp_path: Path) -> dict[str, object]:
    return dict(json.loads((tmp_path / "out" / "result.json").read_text()))


def _assert_equal(got: object, want: list[list[float]]) -> None:
    assert isinstance(got, list)
    diff = max(
        abs(a - b) for ra, rb in zip(got, want, strict=True) for a, b in zip(ra, rb, strict=True)
    )
    assert diff < 1e-12, f"TP result differs from the single-process one by {diff}"


def _logs(client: Client, allocation_id: str, rank: int) -> str:
    request = admin_pb2.WorkerLogsRequest(allocation_id=allocation_id, rank=rank)
    return b"".join(c.data for c in client.admin.WorkerLogs(request, timeout=30)).decode()


def _state(client: Client, allocation_id: str) -> int:
    return _get(client, allocation_id).state


def _start(cluster: Cluster, nodes: list[str]) -> None:
    for node in nodes:
        cluster.start_agent(node)
    wait_for(lambda: cluster.connected(nodes), what=f"agents {nodes} to connect")


def _reasons(allocation: S.Allocation) -> list[str]:
    return [e.reason for e in allocation.events]


def test_tp2_on_one_node_matches_the_single_process_result(
    workers_cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    _start(workers_cluster, ["b200"])
    allocation = _allocate(
        client, "tp2", _worker(tmp_path, steps=8), whole=S.WholeGpus(count=2), gpu_models=["B200"]
    )
    assert allocation.worker.template == "python"
    wait_for(
        lambda: _state(client, allocation.id) == S.ALLOCATION_STATE_RELEASED,
        timeout=WAIT_S,
        what="both ranks to finish",
    )
    done = _get(client, allocation.id)
    assert "RUNNING" in _reasons(done), "running once both ranks were ready"
    assert [w.state for w in done.workers] == [S.WORKER_STATE_EXITED] * 2
    _assert_equal(_result(tmp_path)["x"], _reference(8))
    rank1 = _logs(client, allocation.id, 1)
    assert "READY rank 1/2 tp 1/2" in rank1
    with pytest.raises(grpc.RpcError) as info:
        _logs(client, allocation.id, 5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    cli = [sys.executable, "-m", "scheduler.cli.main", *client.cli_args()]
    logs = subprocess.run(
        [*cli, "logs", allocation.id, "--rank", "1"], capture_output=True, text=True, check=True
    )
    assert "READY rank 1/2" in logs.stdout
    tail = subprocess.run(
        [*cli, "logs", allocation.id, "--tail", "2"], capture_output=True, text=True, check=True
    )
    whole = subprocess.run(
        [*cli, "logs", allocation.id], capture_output=True, text=True, check=True
    )
    assert tail.stdout.splitlines() == whole.stdout.splitlines()[-2:], "--tail counts lines"
    show = subprocess.run(
        [*cli, "allocation", "show", allocation.id], capture_output=True, text=True, check=True
    )
    assert "Workers" in show.stdout and "exited" in show.stdout


def _running_tp2(
    cluster: Cluster, client: Client, tmp_path: Path, request_id: str, steps: int
) -> S.Allocation:
    """A slow TP=2 run on the b200 node, once all its ranks are ready."""
    _start(cluster, ["b200"])
    allocation = _allocate(
        client,
        request_id,
        _worker(tmp_path, steps=steps, step_seconds=0.05),
        whole=S.WholeGpus(count=2),
        gpu_models=["B200"],
    )
    wait_for(
        lambda: _state(client, allocation.id) == S.ALLOCATION_STATE_RUNNING,
        timeout=WAIT_S,
        what="running",
    )
    return allocation


def test_preempted_workers_checkpoint_and_resume_from_it(
    workers_cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    steps = 120
    allocation = _running_tp2(workers_cluster, client, tmp_path, "resumable", steps)
    rendezvous = _get(client, allocation.id).rendezvous
    assert rendezvous.master_addr == "127.0.0.1"  # where simulated nodes live
    assert workers_cluster.rendezvous_ports[0] <= rendezvous.master_port
    client.admin.Preempt(admin_pb2.PreemptRequest(allocation_id=allocation.id, grace_seconds=60))
    wait_for(
        lambda: _state(client, allocation.id) == S.ALLOCATION_STATE_RELEASED,
        timeout=WAIT_S,
        what="the resumed run to finish",
    )
    done = _get(client, allocation.id)
    revoked = [e for e in done.events if e.reason == "REVOKED"]
    assert revoked and "acknowledged" in revoked[0].message, _reasons(done)
    assert done.resume_from and "step-" in done.resume_from
    result = _result(tmp_path)
    assert result["resumed_from"] == done.resume_from
    _assert_equal(result["x"], _reference(steps))
    assert "resumed from" in _logs(client, allocation.id, 0)


def test_a_killed_rank_brings_the_gang_down_and_back_up(
    workers_cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    steps = 100
    allocation = _running_tp2(workers_cluster, client, tmp_path, "killed", steps)
    rank1 = next(w for w in _get(client, allocation.id).workers if w.rank == 1)
    os.kill(rank1.pid, signal.SIGKILL)
    wait_for(
        lambda: _state(client, allocation.id) == S.ALLOCATION_STATE_RELEASED,
        timeout=WAIT_S,
        what="the restarted gang to finish",
    )
    done = _get(client, allocation.id)
    assert [w.restarts for w in done.workers] == [1, 1], "one gang restart, both ranks"
    _assert_equal(_result(tmp_path)["x"], _reference(steps))
    assert "restart 1" in _logs(client, allocation.id, 0), "rank 0 was restarted too"


def test_a_restarted_agent_adopts_its_running_workers(
    workers_cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    _start(workers_cluster, ["b200"])
    steps = 120
    allocation = _allocate(
        client,
        "adopted",
        _worker(tmp_path, steps=steps, step_seconds=0.05),
        whole=S.WholeGpus(count=2),
        gpu_models=["B200"],
    )
    wait_for(
        lambda: _state(client, allocation.id) == S.ALLOCATION_STATE_RUNNING,
        timeout=WAIT_S,
        what="running",
    )
    pids = sorted(w.pid for w in _get(client, allocation.id).workers)
    workers_cluster.kill_agent("b200")
    workers_cluster.start_agent("b200")
    wait_for(lambda: workers_cluster.connected(["b200"]), what="the agent to reconnect")
    wait_for(
        lambda: _state(client, allocation.id) == S.ALLOCATION_STATE_RELEASED,
        timeout=WAIT_S,
        what="the adopted workers to finish",
    )
    done = _get(client, allocation.id)
    assert sorted(w.pid for w in done.workers) == pids, "the same processes, not new ones"
    assert [w.restarts for w in done.workers] == [0, 0]
    _assert_equal(_result(tmp_path)["x"], _reference(steps))
    assert _logs(client, allocation.id, 0).count("--- gpupool: start") == 1


def test_restarts_used_up_fail_the_allocation_per_its_policy(
    workers_cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    _start(workers_cluster, ["b200"])
    broken = S.WorkerSpec(template="python", args={"script": str(WORKERS / "missing.py")})
    allocation = _allocate(
        client,
        "broken",
        broken,
        whole=S.WholeGpus(count=1),
        gpu_models=["B200"],
        on_failure=S.FAILURE_POLICY_FAIL,
    )
    wait_for(
        lambda: _state(client, allocation.id) == S.ALLOCATION_STATE_FAILED,
        timeout=WAIT_S,
        what="the allocation to fail",
    )
    done = _get(client, allocation.id)
    assert "restarts used up" in done.message and "exited with 2" in done.message
    assert "can't open file" in _logs(client, allocation.id, 0)


def test_bad_worker_specs_are_invalid_argument(workers_cluster: Cluster, client: Client) -> None:
    exploit = {"python": "/bin/sh", "script": "-c", "script_args": "'id > pwned.txt'"}
    cases = [
        ("nope", {}, "unknown worker template 'nope'"),
        ("python", {"scrpit": str(SCRIPT)}, "takes no argument 'scrpit'"),
        ("python", {}, "needs 'script'"),
        ("python", exploit, "takes no argument 'python'"),
        ("python", {"script": "/bin/sh"}, "outside the template's roots"),
        ("python", {"script": str(SCRIPT), "script_args": "-c x"}, "uses flag '-c'"),
    ]
    for i, (template, args, message) in enumerate(cases):
        with pytest.raises(grpc.RpcError) as info:
            _allocate(
                client,
                f"bad-{i}",
                S.WorkerSpec(template=template, args=args),
                whole=S.WholeGpus(count=1),
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in (info.value.details() or "")


def test_tp2_pp2_across_two_nodes_matches_the_single_process_result(
    clean_database: str, tmp_path: Path
) -> None:
    base = free_port()
    cluster = Cluster(
        clean_database,
        f"127.0.0.1:{free_port()}",
        tmp_path,
        fleet=WORKERS / "two_nodes.yaml",
        rendezvous_ports=(base, base + 20),
    )
    client = Client.as_admin(cluster.start_scheduler())
    try:
        _start(cluster, ["duo-0", "duo-1"])
        allocation = _allocate(
            client,
            "tp2pp2",
            _worker(tmp_path, steps=8),
            whole=S.WholeGpus(count=4),
            layout=S.ParallelLayout(tp=2, pp=2),
        )
        wait_for(
            lambda: _state(client, allocation.id) == S.ALLOCATION_STATE_RELEASED,
            timeout=60,
            what="the gang over two nodes to finish",
        )
        done = _get(client, allocation.id)
        assert {b.node for b in done.bindings} == {"duo-0", "duo-1"}
        _assert_equal(_result(tmp_path)["x"], _reference(8, pp=2))
    finally:
        client.close()
        cluster.stop()
        kill_workers(tmp_path)
