"""The environment each rank gets (agent/workers/env.py, pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.workers.env import AgentEnv, HostGpu, coordinates, plan_launches
from agent.workers.gang import GangSpec, RankBinding
from scheduler.domain.errors import InvalidArgument
from scheduler.domain.layout import ParallelLayout as Layout
from scheduler.domain.worker_templates import DEFAULT_TEMPLATES_FILE, load_templates

TEMPLATES = load_templates(DEFAULT_TEMPLATES_FILE)
NVLINKED = {i: HostGpu(i, 81920, tuple(j for j in range(4) if j != i)) for i in range(4)}
AGENT = AgentEnv("n0", Path("/tmp/s"))


def _gang(layout: Layout, nodes: list[str], kind: str = "whole", **extra: object) -> GangSpec:
    bindings = tuple(
        RankBinding(rank=r, node=n, gpu_uuid=f"GPU-{n}-{r}", gpu_index=r % 2, **extra)  # type: ignore[arg-type]
        for r, n in enumerate(nodes)
    )
    return GangSpec(
        "a-1",
        "placed",
        kind,
        bindings,
        layout,
        template="python",
        args={"script": "/opt/gpupool/workers/x.py"},
        master_addr="10.0.0.1",
        master_port=29501,
    )


def test_megatron_rank_order_tp_fastest_then_cp_pp_replica() -> None:
    spec = _gang(Layout(tp=2, pp=2, cp=2, replicas=2, ep=2), ["n0"] * 16)
    assert coordinates(spec, 0) == {
        "tp_rank": 0,
        "cp_rank": 0,
        "pp_rank": 0,
        "dp_rank": 0,
        "ep_rank": 0,
    }
    # rank = tp_rank + tp × (cp_rank + cp × (pp_rank + pp × replica))
    c = coordinates(spec, 1 + 2 * (1 + 2 * (1 + 2 * 1)))
    assert (c["tp_rank"], c["cp_rank"], c["pp_rank"], c["dp_rank"]) == (1, 1, 1, 1)


def test_tp2_pp2_over_two_nodes_counts_local_ranks_on_each() -> None:
    spec = _gang(Layout(tp=2, pp=2), ["n0", "n0", "n1", "n1"])
    here = plan_launches(spec, TEMPLATES["python"], AGENT, NVLINKED)
    there = plan_launches(spec, TEMPLATES["python"], AgentEnv("n1", Path("/tmp/s")), NVLINKED)
    assert [launch.env["RANK"] for launch in here] == ["0", "1"]
    assert [launch.env["RANK"] for launch in there] == ["2", "3"]
    assert [launch.env["LOCAL_RANK"] for launch in there] == ["0", "1"]
    env = there[1].env
    assert env["WORLD_SIZE"] == "4" and env["LOCAL_WORLD_SIZE"] == "2"
    assert env["GPUPOOL_TP_RANK"] == "1" and env["GPUPOOL_PP_RANK"] == "1"
    assert env["MASTER_ADDR"] == "10.0.0.1" and env["MASTER_PORT"] == "29501"
    assert env["CUDA_VISIBLE_DEVICES"] == "GPU-n1-3"
    assert env["NCCL_P2P_LEVEL"] == "NVL" and env["GPUPOOL_NODE_RANK"] == "1"
    assert "NCCL_SOCKET_IFNAME" not in env


def test_no_nvlink_no_p2p_level_and_spec_env_cannot_override_ranks() -> None:
    spec = _gang(Layout(tp=2), ["n0", "n0"])
    apart = {i: HostGpu(i, 81920, ()) for i in range(2)}
    allowed = GangSpec(**{**vars(spec), "env": {"NCCL_DEBUG": "INFO"}})
    env = plan_launches(allowed, TEMPLATES["python"], AGENT, apart)[1].env
    assert "NCCL_P2P_LEVEL" not in env
    assert env["RANK"] == "1" and env["NCCL_DEBUG"] == "INFO"
    # Neither a rank variable nor one the template's env_allow lacks.
    for bad in ({"RANK": "7"}, {"HF_HOME": "/cache"}):
        refused = GangSpec(**{**vars(spec), "env": bad})
        with pytest.raises(InvalidArgument, match="environment variable"):
            plan_launches(refused, TEMPLATES["python"], AGENT, apart)


def test_fraction_gets_mps_share_memory_cap_and_vllm_utilisation() -> None:
    spec = _gang(Layout(tp=1), ["n0"], kind="fraction", milli=250, memory_mib=20480)
    spec = GangSpec(**{**vars(spec), "template": "vllm", "args": {"model": "m"}})
    (launch,) = plan_launches(spec, TEMPLATES["vllm"], AGENT, NVLINKED)
    assert launch.env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "25"
    assert launch.env["GPUPOOL_MEMORY_LIMIT_MIB"] == "20480"
    assert launch.argv[launch.argv.index("--gpu-memory-utilization") + 1] == "0.25"


def test_mig_ranks_see_their_mig_device_and_per_node_launch_sees_all() -> None:
    spec = _gang(Layout(tp=1), ["n0"], kind="mig", mig_profile="3g.40gb", mig_device_uuid="MIG-x")
    (launch,) = plan_launches(spec, TEMPLATES["python"], AGENT, NVLINKED)
    assert launch.env["CUDA_VISIBLE_DEVICES"] == "MIG-x"
    whole = _gang(Layout(tp=2), ["n0", "n0"])
    whole = GangSpec(
        **{**vars(whole), "template": "torchrun", "args": {"script": "/opt/gpupool/workers/t.py"}}
    )
    (node_launch,) = plan_launches(whole, TEMPLATES["torchrun"], AGENT, NVLINKED)
    assert node_launch.env["CUDA_VISIBLE_DEVICES"] == "GPU-n0-0,GPU-n0-1"
    assert "RANK" not in node_launch.env  # torchrun numbers its own processes
    assert node_launch.argv[node_launch.argv.index("--nproc-per-node") + 1] == "2"
