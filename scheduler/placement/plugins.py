"""Filter and score plugins, in the shape of the Kubernetes scheduling framework.

A filter has a name and answers None (pass) or a human reason; the engine
keeps (plugin, reason) for every rejection so a waiting request can say why.
A score plugin has a name and rates a feasible option 0..100; the engine
weighs the scores by PlacementConfig.score_weights. Plugins are pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import ClassVar, NamedTuple, Protocol

from scheduler.domain.catalogue import MIG_COMPUTE_SLICES, MIG_MEMORY_SLICES
from scheduler.domain.fleet import FleetSnapshot, GpuView, NodeView
from scheduler.domain.mig import free_starts, profile_for, room_score
from scheduler.domain.requests import FractionDemand, PlacementRequest


@dataclass
class CycleContext:
    """What the plugins of one place() call may read."""

    snapshot: FleetSnapshot
    request: PlacementRequest
    # Models in this fleet that the request may use, sorted.
    models: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        allowed = self.request.gpu_models
        fleet = self.snapshot.structure.models - self.request.excluded_models
        self.models = tuple(sorted(fleet & allowed if allowed else fleet))

    @cached_property
    def largest_gpu_memory_mib(self) -> int:
        return max(self.snapshot.structure.max_memory_mib.values(), default=0)

    @cached_property
    def largest_node_gpus(self) -> int:
        return max(self.snapshot.structure.max_gpus_per_node.values(), default=0)

    @cached_property
    def largest_free_memory_mib(self) -> int:
        """Most free memory on a GPU that could take a fraction; only asked when explaining.

        Read off the snapshot's fraction index, not a scan: at 100,000 GPUs a scan
        cost ~10 ms per failed fractional request."""
        return self.snapshot.largest_fraction_memory_mib(self.models)


class Option(NamedTuple):
    """One feasible way to place the request, before scoring (claims come after)."""

    node: NodeView
    gpus: tuple[GpuView, ...]
    linked_pairs: int = 0  # whole GPUs: chosen pairs that are NVLink peers
    mig_start: int = 0  # MIG: where the instance goes
    mig_mask_after: int = 0  # MIG: the GPU's used slices with the instance


class NodeFilter(Protocol):
    name: ClassVar[str]

    def filter_node(self, ctx: CycleContext, node: NodeView) -> str | None: ...


class GpuFilter(Protocol):
    name: ClassVar[str]

    def filter_gpu(self, ctx: CycleContext, gpu: GpuView) -> str | None: ...


class GangFilter(Protocol):
    """Judges one node from the GPUs on it that passed every GpuFilter, grouped by model."""

    name: ClassVar[str]

    def filter_gang(
        self, ctx: CycleContext, node: NodeView, free: Mapping[str, Sequence[GpuView]]
    ) -> str | None: ...


class ScorePlugin(Protocol):
    name: ClassVar[str]

    def score(self, ctx: CycleContext, option: Option) -> float: ...


# -- filters -------------------------------------------------------------------


class NodeSchedulable:
    name: ClassVar[str] = "NodeSchedulable"

    def filter_node(self, ctx: CycleContext, node: NodeView) -> str | None:
        return None if node.schedulable else "node cordoned, draining or unreachable"


class NodeReserved:
    """Capacity that preemption is freeing belongs to the request it is freed for."""

    name: ClassVar[str] = "NodeReserved"

    def filter_node(self, ctx: CycleContext, node: NodeView) -> str | None:
        if node.name in ctx.request.avoid_nodes:
            return "node reserved: preempted work is making room for higher-priority work"
        return None


class NodeResourcesFit:
    """Host CPU and memory, where the node tracks them (capacity 0: not tracked)."""

    name: ClassVar[str] = "NodeResourcesFit"

    def filter_node(self, ctx: CycleContext, node: NodeView) -> str | None:
        request = ctx.request
        if node.cpu_milli and request.cpu_milli > node.free_cpu_milli:
            return (
                f"not enough free CPU (needs {request.cpu_milli} milli-CPU, "
                f"node has {node.free_cpu_milli})"
            )
        if node.memory_mib and request.host_memory_mib > node.free_memory_mib:
            return (
                f"not enough free host memory (needs {request.host_memory_mib} MiB, "
                f"node has {node.free_memory_mib})"
            )
        return None


class GpuHealthy:
    name: ClassVar[str] = "GpuHealthy"

    def filter_gpu(self, ctx: CycleContext, gpu: GpuView) -> str | None:
        return None if gpu.healthy else "GPU unhealthy"


class GpuModelAllowed:
    name: ClassVar[str] = "GpuModelAllowed"

    def filter_gpu(self, ctx: CycleContext, gpu: GpuView) -> str | None:
        allowed = ctx.request.gpu_models
        if not allowed or gpu.model in allowed:
            return None
        return f"model {gpu.model} not in the allowed models"


class GenerationAllowed:
    """The workload class's generation policy rules this model out ("never")."""

    name: ClassVar[str] = "GenerationAllowed"

    def filter_gpu(self, ctx: CycleContext, gpu: GpuView) -> str | None:
        if gpu.model not in ctx.request.excluded_models:
            return None
        return f"generation {gpu.model} {ctx.request.excluded_reason}"


@dataclass(frozen=True)
class GpuMode:
    name: ClassVar[str] = "GpuMode"
    wants_mig: bool

    def filter_gpu(self, ctx: CycleContext, gpu: GpuView) -> str | None:
        if gpu.mig_enabled == self.wants_mig:
            return None
        if gpu.mig_enabled:
            return "GPU in MIG mode takes only MIG requests"
        return "GPU not in MIG mode"


class GpuIdle:
    """Whole GPUs only: nothing else may hold any part of the GPU."""

    name: ClassVar[str] = "GpuIdle"

    def filter_gpu(self, ctx: CycleContext, gpu: GpuView) -> str | None:
        return None if gpu.is_empty else "GPU already in use"


@dataclass(frozen=True)
class WholeGpusFree:
    """Whole GPUs only: enough idle GPUs of one model on this one node."""

    name: ClassVar[str] = "WholeGpusFree"
    count: int

    def filter_gang(
        self, ctx: CycleContext, node: NodeView, free: Mapping[str, Sequence[GpuView]]
    ) -> str | None:
        most = max((len(gpus) for gpus in free.values()), default=0)
        if most >= self.count:
            return None
        return f"node has {most} free GPUs, needs {self.count}"


@dataclass(frozen=True)
class FractionFits:
    name: ClassVar[str] = "FractionFits"
    demand: FractionDemand

    def filter_gpu(self, ctx: CycleContext, gpu: GpuView) -> str | None:
        if gpu.free_memory_mib < self.demand.memory_mib:
            return (
                f"not enough free memory (needs {self.demand.memory_mib} MiB, "
                f"largest free {ctx.largest_free_memory_mib} MiB)"
            )
        if gpu.free_milli < self.demand.milli:
            return f"not enough free compute (needs {self.demand.milli} milli-GPU)"
        return None


@dataclass(frozen=True)
class MigProfileExists:
    name: ClassVar[str] = "MigProfileExists"
    profile: str

    def filter_gpu(self, ctx: CycleContext, gpu: GpuView) -> str | None:
        if profile_for(gpu.model, self.profile) is not None:
            return None
        return f"profile {self.profile} does not exist on {gpu.model}"


@dataclass(frozen=True)
class MigSlotsFree:
    """A free valid start, compute slices left and the profile under its per-GPU limit."""

    name: ClassVar[str] = "MigSlotsFree"
    profile: str

    def filter_gpu(self, ctx: CycleContext, gpu: GpuView) -> str | None:
        profile = profile_for(gpu.model, self.profile)
        if profile is None:
            return f"profile {self.profile} does not exist on {gpu.model}"
        if gpu.mig_profile_counts.get(profile.name, 0) >= profile.max_count:
            return f"GPU already holds the most {profile.name} it can ({profile.max_count})"
        if gpu.mig_used_compute + profile.compute_slices > MIG_COMPUTE_SLICES:
            return f"not enough free compute slices (needs {profile.compute_slices})"
        if not free_starts(
            profile, gpu.mig_used_mask, gpu.mig_used_compute, gpu.mig_profile_counts
        ):
            return f"no free aligned memory slices for {profile.name}"
        return None


# -- scores --------------------------------------------------------------------


class BinPacking:
    """Whole GPUs: fewer idle GPUs left on the node is better, keeping whole nodes for gangs.

    Absolute (against the fleet's largest node), so nodes of different sizes compare fairly.
    """

    name: ClassVar[str] = "BinPacking"

    def score(self, ctx: CycleContext, option: Option) -> float:
        model = option.gpus[0].model
        left = ctx.snapshot.free_whole_gpus(model, option.node.name) - len(option.gpus)
        return 100.0 * (1.0 - left / ctx.largest_node_gpus)


class NvlinkLocality:
    """Whole GPUs: the share of chosen GPU pairs that are NVLink peers."""

    name: ClassVar[str] = "NvlinkLocality"

    def score(self, ctx: CycleContext, option: Option) -> float:
        count = len(option.gpus)
        if count < 2:
            return 100.0
        return 100.0 * option.linked_pairs / (count * (count - 1) // 2)


@dataclass(frozen=True)
class MemoryBestFit:
    """Fractions: less free memory left on the GPU is better (absolute, across models)."""

    name: ClassVar[str] = "MemoryBestFit"
    memory_mib: int

    def score(self, ctx: CycleContext, option: Option) -> float:
        largest = ctx.largest_gpu_memory_mib
        left = option.gpus[0].free_memory_mib - self.memory_mib
        return 100.0 * (1.0 - left / largest) if largest else 0.0


class MigBestFit:
    """MIG: fewer free memory slices left on the GPU is better."""

    name: ClassVar[str] = "MigBestFit"

    def score(self, ctx: CycleContext, option: Option) -> float:
        return 100.0 * option.mig_mask_after.bit_count() / MIG_MEMORY_SLICES


class MigRoomLeft:
    """MIG: more room left for future (especially large) instances is better."""

    name: ClassVar[str] = "MigRoomLeft"

    def score(self, ctx: CycleContext, option: Option) -> float:
        return room_score(option.mig_mask_after)


# The primary best-fit plugins carry weight 1; secondary ones only break ties:
# MigRoomLeft adds at most 10 points, less than one MIG slice (12.5), and
# NvlinkLocality at most 1, less than one GPU on a 72-GPU node (1.39).
DEFAULT_SCORE_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        BinPacking.name: 1.0,
        NvlinkLocality.name: 0.01,
        MemoryBestFit.name: 1.0,
        MigBestFit.name: 1.0,
        MigRoomLeft.name: 0.1,
        # placement/warm.py (named here, as it imports this module): see its docstring.
        "WarmModel": 2.0,
    }
)


# The default packing policy (fgd+mem+walk): the Fragmentation plugin (fragmentation.py)
# takes the best-fit plugins' place for fractional and whole-GPU requests, so equal FGD
# scores are the only ties; NvlinkLocality (at most 1 point, less than one FGD point)
# breaks them and WarmModel (up to 200) outweighs the whole FGD range. MIG is unchanged.
FRAGMENTATION_SCORE_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        **DEFAULT_SCORE_WEIGHTS,
        BinPacking.name: 0.0,
        MemoryBestFit.name: 0.0,
        "Fragmentation": 1.0,
    }
)
