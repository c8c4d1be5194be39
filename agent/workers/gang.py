"""What the agent needs of a desired Allocation to run its workers: a plain,
frozen view of the proto (so env building stays pure and testable)."""

from __future__ import annotations

from dataclasses import dataclass, field

from gpupool.v1 import types_pb2
from scheduler.domain.layout import ParallelLayout


@dataclass(frozen=True)
class RankBinding:
    rank: int
    node: str
    gpu_uuid: str
    gpu_index: int
    milli: int = 0
    memory_mib: int = 0
    mig_profile: str = ""
    mig_start: int = 0
    mig_device_uuid: str = ""


@dataclass(frozen=True)
class GangSpec:
    allocation_id: str
    state: str  # placed | running | preempting
    kind: str  # whole | fraction | mig
    bindings: tuple[RankBinding, ...]
    layout: ParallelLayout
    template: str = ""
    args: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    master_addr: str = ""
    master_port: int = 0
    resume_from: str = ""
    generation: int = 0
    preemption_deadline: float | None = None  # epoch seconds

    @property
    def world_size(self) -> int:
        return len(self.bindings)

    @property
    def nodes(self) -> tuple[str, ...]:
        """Nodes in order of their first rank (node rank order)."""
        return tuple(dict.fromkeys(b.node for b in self.bindings))

    def local(self, node: str) -> tuple[RankBinding, ...]:
        return tuple(b for b in self.bindings if b.node == node)


_STATES = {
    types_pb2.ALLOCATION_STATE_PLACED: "placed",
    types_pb2.ALLOCATION_STATE_RUNNING: "running",
    types_pb2.ALLOCATION_STATE_PREEMPTING: "preempting",
}


def _layout(allocation: types_pb2.Allocation, world: int) -> ParallelLayout:
    given = allocation.layout
    if not allocation.HasField("layout") or not any((given.tp, given.pp, given.cp, given.replicas)):
        return ParallelLayout(tp=max(world, 1))  # a plain group: one TP group of every rank
    return ParallelLayout(
        tp=given.tp or 1,
        pp=given.pp or 1,
        ep=given.ep or 1,
        cp=given.cp or 1,
        replicas=given.replicas or 1,
    )


def gang_from_allocation(allocation: types_pb2.Allocation) -> GangSpec:
    bindings = tuple(
        RankBinding(
            rank=b.rank if b.rank or i == 0 else i,  # rank-less rows: list order
            node=b.node,
            gpu_uuid=b.gpu_uuid,
            gpu_index=b.gpu_index,
            milli=b.milli_gpu,
            memory_mib=b.memory_mib,
            mig_profile=b.mig_profile,
            mig_start=b.mig_start,
            mig_device_uuid=b.mig_device_uuid,
        )
        for i, b in enumerate(allocation.bindings)
    )
    deadline = None
    if allocation.HasField("preemption_deadline"):
        deadline = (
            allocation.preemption_deadline.seconds + allocation.preemption_deadline.nanos / 1e9
        )
    return GangSpec(
        allocation_id=allocation.id,
        state=_STATES.get(allocation.state, "unknown"),
        kind=allocation.WhichOneof("resources") or "whole",
        bindings=bindings,
        layout=_layout(allocation, len(bindings)),
        template=allocation.worker.template,
        args=dict(allocation.worker.args),
        env=dict(allocation.worker.env),
        master_addr=allocation.rendezvous.master_addr,
        master_port=allocation.rendezvous.master_port,
        resume_from=allocation.resume_from,
        generation=allocation.worker_generation,
        preemption_deadline=deadline,
    )
