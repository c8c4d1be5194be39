"""What a caller asks for, validated: whole GPUs, a GPU fraction or a MIG slice."""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.domain.layout import ParallelLayout


@dataclass(frozen=True)
class WholeDemand:
    count: int


@dataclass(frozen=True)
class FractionDemand:
    """A time-sliced share: compute in milli-GPU (1..1000), memory in absolute MiB."""

    milli: int
    memory_mib: int


@dataclass(frozen=True)
class MigDemand:
    profile: str  # e.g. "3g.40gb"; the name fixes the GPU model family


Demand = WholeDemand | FractionDemand | MigDemand


@dataclass(frozen=True)
class PlacementRequest:
    """The part of an allocation request that placement looks at."""

    demand: Demand
    gpu_models: frozenset[str] = frozenset()  # empty: any model
    workload_class: str = "unspecified"
    priority: int = 0
    # Nodes held for higher-priority work whose victims are still checkpointing.
    avoid_nodes: frozenset[str] = frozenset()
    # Whole GPUs only: place the ranks of this layout (demand.count is its world size).
    layout: ParallelLayout | None = None
    # Weights are int8/int4/fp8: the generation policy may allow smaller parts.
    quantized: bool = False
    # Set by place() from the generation policy: models this class may never use, and why.
    excluded_models: frozenset[str] = frozenset()
    excluded_reason: str = ""
    # The LLM to serve, canonical (llm_catalogue.canonical_model_name); "" for none.
    # Only scores (WarmModel): it never makes a GPU ineligible.
    model: str = ""
    # Host resources on the node; 0 means "not asked": every node fits. A request
    # for WholeDemand(0) with some of these is host-only (a CPU job, no GPU).
    cpu_milli: int = 0
    host_memory_mib: int = 0
    # A soft spread (replicas of one deployment, issue 13): node sets to stay
    # off, strongest first (the zones other replicas use, then their racks,
    # then their nodes); tried in turn, then anywhere. Never makes it wait.
    spread_away: tuple[frozenset[str], ...] = ()

    @property
    def host_only(self) -> bool:
        demand = self.demand
        return (
            isinstance(demand, WholeDemand)
            and demand.count == 0
            and (self.cpu_milli > 0 or self.host_memory_mib > 0)
        )
