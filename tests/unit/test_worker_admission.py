"""The agent checks a worker spec again against its own templates before
every launch (agent/workers/admission.py): the node's file wins over the
scheduler's, symlinks may not lead out of a root, and a refused gang is
reported FAILED with the reason, no process started; the same for a spec
whose env sets a variable the node's template does not allow."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.nvml import SimulatedNvml
from agent.workers.admission import admit
from agent.workers.env import AgentEnv, plan_launches
from agent.workers.gang import GangSpec, RankBinding
from agent.workers.logs import log_dir
from agent.workers.supervisor import Supervisor
from gpupool.v1 import agents_pb2, types_pb2
from scheduler.domain.errors import InvalidArgument
from scheduler.domain.layout import ParallelLayout as Layout
from scheduler.domain.worker_templates import WorkerTemplate, parse_templates

FLEET = Path(__file__).resolve().parents[2] / "deploy" / "fleets" / "mixed.yaml"


# Runs a shell command in any Python program (the warnings filter imports
# `antigravity`, which opens $BROWSER).
ENV_EXPLOIT = {"PYTHONWARNINGS": "ignore::antigravity.x", "BROWSER": "sh -c 'id > pwned' %s"}


def _templates(root: Path, env_allow: list[str] | None = None) -> dict[str, WorkerTemplate]:
    body = {
        "command": ["python3", "{script}"],
        "args": {"script": {"type": "path", "required": True, "roots": [str(root)]}},
        "env_allow": env_allow,
    }
    return parse_templates({"templates": {"python": body}})


def _gang(script: str, template: str = "python", env: dict[str, str] | None = None) -> GangSpec:
    binding = RankBinding(rank=0, node="n0", gpu_uuid="GPU-0", gpu_index=0)
    return GangSpec(
        "a-1", "placed", "whole", (binding,), Layout(tp=1), template, {"script": script}, env or {}
    )


def test_the_nodes_own_roots_win_over_the_schedulers(tmp_path: Path) -> None:
    scheduler_side = _templates(tmp_path / "anywhere")
    node_side = _templates(tmp_path / "workers")
    spec = _gang(str(tmp_path / "anywhere" / "evil.py"))
    assert admit(scheduler_side, spec).name == "python"
    with pytest.raises(InvalidArgument, match="outside the template's roots"):
        admit(node_side, spec)
    with pytest.raises(InvalidArgument, match="no worker template 'vllm'"):
        admit(node_side, _gang(str(tmp_path / "workers" / "a.py"), "vllm"))


def test_the_nodes_own_env_allow_wins_over_the_schedulers(tmp_path: Path) -> None:
    root = tmp_path / "workers"
    scheduler_side = _templates(root, ["NCCL_DEBUG", "LOG_LEVEL"])
    node_side = _templates(root, ["LOG_LEVEL"])
    spec = _gang(str(root / "a.py"), env={"NCCL_DEBUG": "INFO"})
    assert admit(scheduler_side, spec).name == "python"
    with pytest.raises(InvalidArgument, match=r"'NCCL_DEBUG' \(allowed: LOG_LEVEL\)"):
        admit(node_side, spec)
    assert admit(node_side, _gang(str(root / "a.py"), env={"LOG_LEVEL": "debug"}))


def test_the_node_refuses_code_loading_env_whatever_the_scheduler_said(tmp_path: Path) -> None:
    root = tmp_path / "workers"
    templates = _templates(root, ["NCCL_DEBUG"])
    for env in (
        ENV_EXPLOIT,
        {"LD_PRELOAD": "/tmp/evil.so"},
        {"PATH": "/tmp/bin"},
        {"NCCL_NET_PLUGIN": "/tmp/p.so"},
        {"NCCL_DEBUG": "INFO\nLD_PRELOAD=/tmp/evil.so"},
    ):
        spec = _gang(str(root / "a.py"), env=env)
        with pytest.raises(InvalidArgument, match="environment variable"):
            admit(templates, spec)
        # Building the environment checks it again (env.py): never in a launch.
        with pytest.raises(InvalidArgument, match="environment variable"):
            plan_launches(spec, templates["python"], AgentEnv("n0", tmp_path), {})
    spec = _gang(str(root / "a.py"), env={"NCCL_DEBUG": "WARN"})
    (launch,) = plan_launches(spec, templates["python"], AgentEnv("n0", tmp_path), {})
    assert launch.env["NCCL_DEBUG"] == "WARN" and "BROWSER" not in launch.env
    assert launch.env["RANK"] == "0"


def test_a_symlink_may_not_lead_out_of_its_root(tmp_path: Path) -> None:
    root = tmp_path / "workers"
    root.mkdir()
    (root / "ok.py").write_text("")
    (root / "inner.py").symlink_to(root / "ok.py")
    (root / "shell").symlink_to("/bin/sh")
    templates = _templates(root)
    assert admit(templates, _gang(str(root / "ok.py"))).name == "python"
    assert admit(templates, _gang(str(root / "inner.py"))).name == "python"
    with pytest.raises(InvalidArgument, match=r"resolves to '/.*sh', outside"):
        admit(templates, _gang(str(root / "shell")))


def test_a_root_that_is_itself_a_link_still_holds_its_scripts(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    (real / "a.py").write_text("")
    assert admit(_templates(tmp_path / "link"), _gang(str(tmp_path / "link" / "a.py")))


def test_a_refused_gang_reports_failed_and_starts_nothing(tmp_path: Path) -> None:
    backend = SimulatedNvml.from_fleet_file(FLEET, "b200")
    gpu = backend.devices()[0]
    marker = tmp_path / "ran"
    script = tmp_path / "elsewhere" / "w.py"
    script.parent.mkdir()
    script.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    sent: list[agents_pb2.AgentMessage] = []
    supervisor = Supervisor(
        "b200",
        tmp_path / "state",
        backend,
        _templates(tmp_path / "workers"),
        sent.append,
        lambda allocation_id, uri: None,
        tmp_path / "sockets",
    )
    allocation = types_pb2.Allocation(
        id="a-1",
        state=types_pb2.ALLOCATION_STATE_PLACED,
        bindings=[types_pb2.GpuBinding(node="b200", gpu_uuid=gpu.uuid, gpu_index=0)],
        worker=types_pb2.WorkerSpec(template="python", args={"script": str(script)}),
        rendezvous=types_pb2.Rendezvous(master_addr="127.0.0.1", master_port=29500),
    )
    supervisor.reconcile([allocation])
    supervisor.tick()
    (status,) = supervisor.statuses()
    assert status.state == types_pb2.WORKER_STATE_FAILED
    assert "refused by this node's worker templates" in status.reason
    assert "outside the template's roots" in status.reason
    assert status.pid == 0
    reported = [w for m in sent for w in m.workers.workers]
    assert reported and reported[-1].state == types_pb2.WORKER_STATE_FAILED
    time.sleep(0.5)  # long enough for a started python to have written its marker
    assert not marker.exists(), "the refused script ran"
    assert not any(log_dir(tmp_path / "state", "a-1").glob("*.log")), "no worker was started"


def test_a_gang_whose_env_the_node_refuses_reports_failed_and_starts_nothing(
    tmp_path: Path,
) -> None:
    backend = SimulatedNvml.from_fleet_file(FLEET, "b200")
    gpu = backend.devices()[0]
    marker = tmp_path / "ran"
    script = tmp_path / "workers" / "w.py"
    script.parent.mkdir()
    script.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    sent: list[agents_pb2.AgentMessage] = []
    supervisor = Supervisor(
        "b200",
        tmp_path / "state",
        backend,
        _templates(tmp_path / "workers", ["NCCL_DEBUG"]),
        sent.append,
        lambda allocation_id, uri: None,
        tmp_path / "sockets",
    )
    worker = types_pb2.WorkerSpec(template="python", args={"script": str(script)}, env=ENV_EXPLOIT)
    allocation = types_pb2.Allocation(
        id="a-1",
        state=types_pb2.ALLOCATION_STATE_PLACED,
        bindings=[types_pb2.GpuBinding(node="b200", gpu_uuid=gpu.uuid, gpu_index=0)],
        worker=worker,
        rendezvous=types_pb2.Rendezvous(master_addr="127.0.0.1", master_port=29500),
    )
    supervisor.reconcile([allocation])
    supervisor.tick()
    (status,) = supervisor.statuses()
    assert status.state == types_pb2.WORKER_STATE_FAILED
    assert "refused by this node's worker templates" in status.reason
    assert "'BROWSER'" in status.reason and "allowed: NCCL_DEBUG" in status.reason
    assert status.pid == 0
    time.sleep(0.5)  # long enough for a started python to have written its marker
    assert not marker.exists(), "the refused script ran"
    assert not any(log_dir(tmp_path / "state", "a-1").glob("*.log")), "no worker was started"
