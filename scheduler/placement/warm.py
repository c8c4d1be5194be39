"""WarmModel: prefer GPUs where the requested model's weights already are.

A cold start moves the model's bytes from wherever they are (model_loading.py
has the bandwidth of each tier and its sources) and starts the inference
engine; a warm standby instance skips both:

    tier of a GPU:   standby on that GPU               -> gpu (nothing to do)
                     serving on it or any GPU of the node,
                     or in the node's host RAM          -> host_ram (PCIe of the GPU)
                     on the node's local disk           -> local_disk
                     nowhere on the node                -> remote
    tier of an option: the slowest of its GPUs (every GPU loads its shard)
    seconds(tier) = 0 for gpu, else start_overhead_s + bytes / bandwidth(tier)
    score = 100 * (1 - seconds(tier) / seconds(remote)) * scale

A serving copy cannot be handed to another allocation, hence host_ram. The
start overhead (20 s: process, CUDA context, graph capture) is what makes a
standby instance the clear first choice over a page-cache-warm GPU.
`scale` = min(1, seconds(remote) / full_weight_cold_start_s): a small model
starts in seconds anyway, so being warm matters less than packing well; a
cold start of 60 s or more (a model of 40 GB in bf16 at 1 GB/s) counts
fully. With the default weight (2, twice Fragmentation's in the default
policy, and BinPacking's and MemoryBestFit's in the plain walk), every warm
tier of a large model outweighs the whole range of the packing scores; for
an 8B model a standby GPU still does, the other tiers tip closer calls. A
model of unknown size counts as UNKNOWN_MODEL_BYTES. Without a model in the
request every option scores 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from scheduler.domain.fleet import GpuView, NodeView
from scheduler.domain.llm_catalogue import model_size_bytes
from scheduler.domain.model_loading import (
    DEFAULT_BANDWIDTHS,
    GPU,
    HOST_RAM,
    LOCAL_DISK,
    REMOTE,
    LoadBandwidths,
)
from scheduler.placement.plugins import CycleContext, Option

TIER_RANK = {GPU: 0, HOST_RAM: 1, LOCAL_DISK: 2, REMOTE: 3}


def gpu_tier(model: str, node: NodeView, gpu: GpuView, on_node_gpus: bool) -> str:
    """Where `gpu` would load `model` from. `on_node_gpus`: some GPU of the node holds it."""
    if model in gpu.standby_models:
        return GPU
    if on_node_gpus or model in node.host_ram_models:
        return HOST_RAM
    if model in node.local_disk_models:
        return LOCAL_DISK
    return REMOTE


def option_tier(model: str, node: NodeView, gpus: Iterable[GpuView]) -> str:
    """The slowest tier among the chosen GPUs."""
    on_node_gpus = any(model in g.resident_models for g in node.gpus)
    tiers = [gpu_tier(model, node, g, on_node_gpus) for g in gpus]
    return max(tiers, key=TIER_RANK.__getitem__, default=REMOTE)


def node_rank(model: str, node: NodeView) -> int:
    """The best tier the node offers for `model` (0 best): the order warm nodes are walked in."""
    if any(model in g.standby_models for g in node.gpus):
        return TIER_RANK[GPU]
    if model in node.host_ram_models or any(model in g.resident_models for g in node.gpus):
        return TIER_RANK[HOST_RAM]
    if model in node.local_disk_models:
        return TIER_RANK[LOCAL_DISK]
    return TIER_RANK[REMOTE]


# An unknown model counts as a large one (a 70B model in bf16): being warm matters.
UNKNOWN_MODEL_BYTES = 140 * 10**9


@dataclass(frozen=True)
class WarmModel:
    name: ClassVar[str] = "WarmModel"
    bandwidths: LoadBandwidths = DEFAULT_BANDWIDTHS
    start_overhead_s: float = 20.0
    full_weight_cold_start_s: float = 60.0

    def cold_start_seconds(self, size_bytes: int, tier: str, gpu_model: str) -> float:
        if tier == GPU:
            return 0.0
        return self.start_overhead_s + self.bandwidths.seconds(size_bytes, tier, gpu_model)

    def score(self, ctx: CycleContext, option: Option) -> float:
        model = ctx.request.model
        if not model:
            return 0.0
        tier = option_tier(model, option.node, option.gpus)
        if tier == REMOTE:
            return 0.0
        size = option.node.model_sizes.get(model) or model_size_bytes(model) or UNKNOWN_MODEL_BYTES
        gpu_model = option.gpus[0].model
        remote_s = self.cold_start_seconds(size, REMOTE, gpu_model)
        if remote_s <= 0:
            return 0.0
        avoided = 1.0 - self.cold_start_seconds(size, tier, gpu_model) / remote_s
        scale = min(1.0, remote_s / self.full_weight_cold_start_s)
        return 100.0 * max(0.0, avoided) * scale
