"""Worker arguments over real gRPC: a request that tries to choose the
program, or to pass a flag the template does not allow, is INVALID_ARGUMENT
and leaves nothing behind (the shipped deploy/worker-templates.yaml)."""

from __future__ import annotations

import grpc
import pytest
from sqlalchemy import func, select

from gpupool.v1 import scheduler_pb2, types_pb2
from scheduler.app import SchedulerApp
from scheduler.store.models import AllocationRow
from tests.integration.conftest import Client

# The request that ran `id > pwned.txt` as root on the GPU host when the
# python template took its interpreter from the request.
EXPLOIT = types_pb2.WorkerSpec(
    template="python",
    args={"python": "/bin/sh", "script": "-c", "script_args": "'id > pwned.txt; echo pwned'"},
)


def _allocate(
    client: Client, request_id: str, worker: types_pb2.WorkerSpec
) -> types_pb2.Allocation:
    request = scheduler_pb2.AllocateRequest(
        tenant="team-a", request_id=request_id, whole=types_pb2.WholeGpus(count=1), worker=worker
    )
    return client.scheduler.Allocate(request).allocation


def _refused(client: Client, request_id: str, worker: types_pb2.WorkerSpec) -> str:
    with pytest.raises(grpc.RpcError) as info:
        _allocate(client, request_id, worker)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    return info.value.details() or ""


def _stored(app: SchedulerApp) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(AllocationRow)).scalar_one())


def test_the_shell_exploit_is_invalid_argument_and_stores_nothing(
    fleet_client: Client, app: SchedulerApp
) -> None:
    details = _refused(fleet_client, "pwn", EXPLOIT)
    assert "takes no argument 'python'" in details
    without_python = types_pb2.WorkerSpec(
        template="python", args={k: v for k, v in EXPLOIT.args.items() if k != "python"}
    )
    assert "must not begin with '-'" in _refused(fleet_client, "pwn-2", without_python)
    shell = types_pb2.WorkerSpec(template="python", args={"script": "/bin/sh"})
    assert "outside the template's roots" in _refused(fleet_client, "pwn-3", shell)
    assert _stored(app) == 0, "a refused request left an allocation row"
    listed = fleet_client.scheduler.ListAllocations(
        scheduler_pb2.ListAllocationsRequest(tenant="team-a")
    )
    assert list(listed.allocations) == []


def test_a_flag_the_template_does_not_allow_is_refused(
    fleet_client: Client, app: SchedulerApp
) -> None:
    remote_code = types_pb2.WorkerSpec(
        template="vllm", args={"model": "org/model", "extra_args": "--trust-remote-code"}
    )
    details = _refused(fleet_client, "trc", remote_code)
    assert "'extra_args'" in details and "'--trust-remote-code'" in details
    assert "--max-model-len" in details, "says which flags are allowed"
    long_value = types_pb2.WorkerSpec(template="vllm", args={"model": "-" + "x" * 10_000})
    assert len(_refused(fleet_client, "long", long_value)) < 500, "the value is quoted short"
    assert _stored(app) == 0


def test_a_worker_within_its_template_is_stored(fleet_client: Client, app: SchedulerApp) -> None:
    worker = types_pb2.WorkerSpec(
        template="vllm", args={"model": "org/model", "extra_args": "--max-model-len 8192"}
    )
    allocation = _allocate(fleet_client, "ok", worker)
    assert allocation.worker.args["extra_args"] == "--max-model-len 8192"
    assert _stored(app) == 1


def test_the_env_exploit_is_invalid_argument_and_stores_nothing(
    fleet_client: Client, app: SchedulerApp
) -> None:
    # PYTHONWARNINGS imports `antigravity`, which runs $BROWSER: a shell
    # command in any Python worker (python, torchrun, vLLM, SGLang).
    env = {"PYTHONWARNINGS": "ignore::antigravity.x", "BROWSER": "sh -c 'id > pwned.txt' %s"}
    script = {"script": "/opt/gpupool/workers/train.py"}
    for template, args in (("python", script), ("torchrun", script), ("vllm", {"model": "m"})):
        worker = types_pb2.WorkerSpec(template=template, args=args, env=env)
        details = _refused(fleet_client, f"env-{template}", worker)
        assert "environment variable 'BROWSER', 'PYTHONWARNINGS'" in details
        assert "allowed: " in details and "NCCL_DEBUG" in details
    preload = types_pb2.WorkerSpec(template="python", args=script, env={"LD_PRELOAD": "/tmp/x.so"})
    assert "'LD_PRELOAD'" in _refused(fleet_client, "preload", preload)
    long_env = types_pb2.WorkerSpec(template="python", args=script, env={"NCCL_DEBUG": "I" * 2000})
    assert len(_refused(fleet_client, "long-env", long_env)) < 500
    assert _stored(app) == 0, "a refused request left an allocation row"
    allowed = types_pb2.WorkerSpec(template="python", args=script, env={"NCCL_DEBUG": "INFO"})
    assert _allocate(fleet_client, "env-ok", allowed).worker.env == {"NCCL_DEBUG": "INFO"}
    assert _stored(app) == 1
