"""Which plugins judge which demand, and running a candidate through them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from scheduler.domain.fleet import GpuView, NodeView
from scheduler.domain.requests import Demand, FractionDemand, WholeDemand
from scheduler.placement.plugins import (
    BinPacking,
    CycleContext,
    FractionFits,
    GangFilter,
    GenerationAllowed,
    GpuFilter,
    GpuHealthy,
    GpuIdle,
    GpuMode,
    GpuModelAllowed,
    MemoryBestFit,
    MigBestFit,
    MigProfileExists,
    MigRoomLeft,
    MigSlotsFree,
    NodeFilter,
    NodeReserved,
    NodeResourcesFit,
    NodeSchedulable,
    NvlinkLocality,
    ScorePlugin,
    WholeGpusFree,
)
from scheduler.placement.warm import WarmModel


@dataclass(frozen=True)
class Pipeline:
    """Filters run in this order and the first to reject a candidate names the reason."""

    node_filters: tuple[NodeFilter, ...]
    gpu_filters: tuple[GpuFilter, ...]
    gang_filters: tuple[GangFilter, ...]  # whole GPUs only
    scorers: tuple[ScorePlugin, ...]


@lru_cache(maxsize=1024)
def pipeline_for(
    demand: Demand, host_resources: bool = False, model_lists: bool = True
) -> Pipeline:
    """`host_resources`: the request asks for host CPU or memory, so nodes must fit it too.
    `model_lists`: it names allowed models or has some ruled out; without, the filters
    that read those lists are left out, as they would pass every GPU (the packing scan
    runs the GPU filters over each node class it judges)."""
    node_filters: tuple[NodeFilter, ...] = (NodeSchedulable(), NodeReserved())
    if host_resources:
        node_filters = (*node_filters, NodeResourcesFit())
    model_filters: tuple[GpuFilter, ...] = ()
    if model_lists:
        model_filters = (GpuModelAllowed(), GenerationAllowed())
    if isinstance(demand, WholeDemand):
        return Pipeline(
            node_filters,
            (
                GpuHealthy(),
                *model_filters,
                GpuMode(wants_mig=False),
                GpuIdle(),
            ),
            (WholeGpusFree(demand.count),),
            (BinPacking(), NvlinkLocality(), WarmModel()),
        )
    if isinstance(demand, FractionDemand):
        return Pipeline(
            node_filters,
            (
                GpuHealthy(),
                *model_filters,
                GpuMode(wants_mig=False),
                FractionFits(demand),
            ),
            (),
            (MemoryBestFit(demand.memory_mib), WarmModel()),
        )
    return Pipeline(
        node_filters,
        (
            GpuHealthy(),
            *model_filters,
            GpuMode(wants_mig=True),
            MigProfileExists(demand.profile),
            MigSlotsFree(demand.profile),
        ),
        (),
        (MigBestFit(), MigRoomLeft()),
    )


def first_rejection(
    ctx: CycleContext, pipeline: Pipeline, node: NodeView, gpu: GpuView
) -> tuple[str, str] | None:
    """(plugin, reason) of the first filter that rejects this GPU on this node, else None."""
    return node_rejection(ctx, pipeline, node) or gpu_rejection(ctx, pipeline, gpu)


def node_rejection(ctx: CycleContext, pipeline: Pipeline, node: NodeView) -> tuple[str, str] | None:
    for node_filter in pipeline.node_filters:
        reason = node_filter.filter_node(ctx, node)
        if reason is not None:
            return node_filter.name, reason
    return None


def gpu_rejection(ctx: CycleContext, pipeline: Pipeline, gpu: GpuView) -> tuple[str, str] | None:
    for gpu_filter in pipeline.gpu_filters:
        reason = gpu_filter.filter_gpu(ctx, gpu)
        if reason is not None:
            return gpu_filter.name, reason
    return None


def passing_gpus(ctx: CycleContext, pipeline: Pipeline, gpus: list[GpuView]) -> list[GpuView]:
    """The GPUs that pass every GpuFilter."""
    for gpu_filter in pipeline.gpu_filters:
        check = gpu_filter.filter_gpu
        gpus = [gpu for gpu in gpus if check(ctx, gpu) is None]
    return gpus
