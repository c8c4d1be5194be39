"""The launches of one allocation on this node, with the environment a
parallel inference engine expects (pure: no processes, no files).

Rank coordinates follow Megatron's order: rank = tp_rank + tp × (cp_rank +
cp × (pp_rank + pp × replica)); an EP group is `ep` consecutive ranks of one
stage. LOCAL_RANK counts only this node's ranks, in rank order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.workers.gang import GangSpec, RankBinding
from scheduler.domain.worker_templates import WorkerTemplate, check_env, render_command

DEFAULT_MEMORY_UTILIZATION = 0.9


@dataclass(frozen=True)
class HostGpu:
    """What the agent knows of a local GPU that the scheduler does not send."""

    index: int
    memory_mib: int
    nvlink_peers: tuple[int, ...]


@dataclass(frozen=True)
class Launch:
    """One process to start: the ranks it serves, its argv and environment."""

    allocation_id: str
    ranks: tuple[int, ...]
    argv: tuple[str, ...]
    env: Mapping[str, str]
    checkpoint_socket: str

    @property
    def name(self) -> str:
        return f"rank-{self.ranks[0]}" if len(self.ranks) == 1 else f"node-{self.ranks[0]}"


@dataclass(frozen=True)
class AgentEnv:
    node: str
    socket_dir: Path
    nccl_socket_ifname: str = ""  # left to NCCL unless configured


def coordinates(spec: GangSpec, rank: int) -> dict[str, int]:
    """The rank's coordinates (scheduler.domain.layout), with the replica as dp_rank."""
    coords = spec.layout.coordinates(rank)
    coords["dp_rank"] = coords.pop("replica")
    return coords


def visible_device(binding: RankBinding) -> str:
    return binding.mig_device_uuid if binding.mig_profile else binding.gpu_uuid


def nvlink_connected(local: Sequence[RankBinding], gpus: Mapping[int, HostGpu]) -> bool:
    """True when every pair of this gang's local GPUs are NVLink peers."""
    indexes = sorted({b.gpu_index for b in local})
    if len(indexes) < 2:
        return False
    return all(
        other in gpus.get(i, HostGpu(i, 0, ())).nvlink_peers
        for i in indexes
        for other in indexes
        if other != i
    )


def memory_utilization(
    spec: GangSpec, local: Sequence[RankBinding], gpus: Mapping[int, HostGpu]
) -> float:
    """vLLM's --gpu-memory-utilization: the claimed share for a fraction."""
    if spec.kind != "fraction" or not local:
        return DEFAULT_MEMORY_UTILIZATION
    total = gpus.get(local[0].gpu_index, HostGpu(0, 0, ())).memory_mib
    if total <= 0:
        return DEFAULT_MEMORY_UTILIZATION
    return max(0.01, int(local[0].memory_mib / total * 1000) / 1000)  # round down


def socket_path(agent: AgentEnv, spec: GangSpec, first_rank: int) -> Path:
    return agent.socket_dir / f"{spec.allocation_id}-{first_rank}.sock"


def plan_launches(
    spec: GangSpec,
    template: WorkerTemplate,
    agent: AgentEnv,
    gpus: Mapping[int, HostGpu],
) -> list[Launch]:
    """This node's launches of the gang: one per local rank (per_rank
    templates) or one holding every local GPU (per_node templates)."""
    local = sorted(spec.local(agent.node), key=lambda b: b.rank)
    if not local:
        return []
    groups = [[b] for b in local] if template.launch == "per_rank" else [local]
    node_rank = spec.nodes.index(agent.node)
    shared = _shared_env(spec, template, agent, local, gpus, node_rank)
    utilization = memory_utilization(spec, local, gpus)
    launches = []
    for group in groups:
        first = group[0]
        socket = str(socket_path(agent, spec, first.rank))
        coords = coordinates(spec, first.rank)
        env = dict(shared)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(visible_device(b) for b in group)
        env["GPUPOOL_RANKS"] = ",".join(str(b.rank) for b in group)
        env["GPUPOOL_CHECKPOINT_SOCKET"] = socket
        if template.launch == "per_rank":
            env["RANK"] = str(first.rank)
            env["LOCAL_RANK"] = str(local.index(first))
            for axis in ("tp", "pp", "cp", "ep", "dp"):
                env[f"GPUPOOL_{axis.upper()}_RANK"] = str(coords[f"{axis}_rank"])
        builtins = {
            "rank": str(first.rank),
            "local_rank": str(local.index(first)),
            "world_size": str(spec.world_size),
            "local_world_size": str(len(local)),
            "node_rank": str(node_rank),
            "nnodes": str(len(spec.nodes)),
            "tp": str(spec.layout.tp),
            "pp": str(spec.layout.pp),
            "ep": str(spec.layout.ep),
            "cp": str(spec.layout.cp),
            "master_addr": spec.master_addr,
            "master_port": str(spec.master_port),
            "allocation_id": spec.allocation_id,
            "gpu_memory_utilization": f"{utilization:g}",
            "checkpoint_socket": socket,
            "resume_from": spec.resume_from,
        }
        argv = render_command(template, spec.args, builtins)
        launches.append(
            Launch(spec.allocation_id, tuple(b.rank for b in group), tuple(argv), env, socket)
        )
    return launches


def _shared_env(
    spec: GangSpec,
    template: WorkerTemplate,
    agent: AgentEnv,
    local: Sequence[RankBinding],
    gpus: Mapping[int, HostGpu],
    node_rank: int,
) -> dict[str, str]:
    layout = spec.layout
    env = dict(template.env)
    # Checked again here, against this node's template: the request's env
    # sets only what its env_allow lists, never the agent's own names
    # (RESERVED_ENV, set below).
    env.update(check_env(template, spec.env))
    env.update(
        {
            "WORLD_SIZE": str(spec.world_size),
            "LOCAL_WORLD_SIZE": str(len(local)),
            "GROUP_RANK": str(node_rank),
            "NODE_RANK": str(node_rank),
            "MASTER_ADDR": spec.master_addr,
            "MASTER_PORT": str(spec.master_port),
            "GPUPOOL_ALLOCATION_ID": spec.allocation_id,
            "GPUPOOL_NODE_RANK": str(node_rank),
            "GPUPOOL_NNODES": str(len(spec.nodes)),
            "GPUPOOL_TP_SIZE": str(layout.tp),
            "GPUPOOL_PP_SIZE": str(layout.pp),
            "GPUPOOL_CP_SIZE": str(layout.cp),
            "GPUPOOL_EP_SIZE": str(layout.ep),
            "GPUPOOL_DP_SIZE": str(layout.replicas),
            "GPUPOOL_WORKER_GENERATION": str(spec.generation),
        }
    )
    if spec.resume_from:
        env["GPUPOOL_RESUME_FROM"] = spec.resume_from
    if nvlink_connected(local, gpus):
        env.setdefault("NCCL_P2P_LEVEL", "NVL")
    if agent.nccl_socket_ifname:
        env.setdefault("NCCL_SOCKET_IFNAME", agent.nccl_socket_ifname)
    if spec.kind == "fraction":
        first = local[0]
        # MPS caps the SMs a client may use; the memory cap is for the worker
        # to apply (torch: set_per_process_memory_fraction, vLLM: the flag).
        env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = f"{first.milli / 10:g}"
        env["GPUPOOL_MEMORY_LIMIT_MIB"] = str(first.memory_mib)
        env["GPUPOOL_GPU_MEMORY_MIB"] = str(gpus.get(first.gpu_index, HostGpu(0, 0, ())).memory_mib)
    return env
