"""Automatic layout: from a model to serve, the GPU model and the smallest TP degree.

Memory per GPU at tensor-parallel degree tp (and pp pipeline stages):

    weights / (tp·pp) + KV cache / (tp·pp) + runtime reserve  ≤  utilisation × GPU memory

The KV cache holds context_tokens × concurrent_sequences tokens at the
model's bytes per token (catalogue figures; without them a rule of thumb of
0.1 MiB per token per billion parameters / 70, the Llama-70B GQA figure
scaled). The reserve (CUDA context, activations, graphs) is 2 GiB per GPU.
TP degrees are powers of two up to the GPUs one NVLink domain of that model
holds; when even that is too small, pipeline stages are added (PP), since
stages may cross nodes and TP groups may not.

GPU models are tried in the generation policy's order for the workload class
(primary, then overflow); within a tier a model held in warm standby on that
GPU model wins (no cold start), then the fewest GPUs, then the fastest part
for latency-critical work and the cheapest for the rest. A class left
unspecified is inferred: ≥ 128K context is long-context, ≤ 13B parameters
small-model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from scheduler.domain.catalogue import CATALOGUE
from scheduler.domain.errors import FailedPrecondition, InvalidArgument, quoted
from scheduler.domain.generations import GenerationPolicy
from scheduler.domain.layout import ParallelLayout
from scheduler.domain.llm_catalogue import (
    DEFAULT_DTYPE,
    LLM_CATALOGUE,
    LlmModel,
    lookup,
    normalise_dtype,
    weight_bytes,
)

MIB = 1024 * 1024
RUNTIME_RESERVE_MIB = 2048
DEFAULT_CONTEXT_TOKENS = 8192
DEFAULT_UTILIZATION = 0.9
QUANTIZED_DTYPES = frozenset({"fp8", "int8", "int4"})
LONG_CONTEXT_TOKENS = 128 * 1024
SMALL_MODEL_BILLIONS = 13.0
MAX_PIPELINE_STAGES = 16
# 100T parameters: fifty times the largest published models, and finite, so
# weight and KV sizes stay integers.
MAX_PARAMS_BILLION = 100_000


@dataclass(frozen=True)
class ModelRequest:
    """What a caller says about the model it wants to serve (ModelSpec on the wire)."""

    name: str = ""
    params_billion: float = 0.0
    dtype: str = ""
    context_tokens: int = 0
    concurrent_sequences: int = 0
    memory_utilization: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return dict(vars(self))


@dataclass(frozen=True)
class ResolvedModel:
    label: str  # what explanations call it: "llama-3.1-70b" or "a 30B model"
    params_billion: float
    dtype: str
    kv_tokens: int
    utilization: float
    catalogue: LlmModel | None

    @property
    def quantized(self) -> bool:
        return self.dtype in QUANTIZED_DTYPES

    @property
    def weights_mib(self) -> int:
        return math.ceil(weight_bytes(self.params_billion, self.dtype) / MIB)

    @property
    def kv_mib(self) -> int:
        if self.catalogue is not None:
            per_token = self.catalogue.kv_bytes_per_token(self.dtype)
        else:
            per_token = int(0.1 * MIB * self.params_billion / 70)
        return math.ceil(self.kv_tokens * per_token / MIB)


@dataclass(frozen=True)
class ModelCapacity:
    """How many GPUs of one model (outside MIG mode) the fleet has."""

    domain: int  # the most that one NVLink domain holds
    total: int
    # The requested model is loaded, idle (warm standby), on GPUs of this model.
    warm_standby: bool = False


@dataclass(frozen=True)
class LayoutDecision:
    gpu_model: str
    layout: ParallelLayout
    workload_class: str
    quantized: bool
    weights_mib: int
    kv_cache_mib: int
    explanation: tuple[str, ...]


def resolve_model(request: ModelRequest) -> ResolvedModel:
    """Catalogue figures for a named model, else the given parameter count; InvalidArgument
    naming what is missing or out of range."""
    if not (
        math.isfinite(request.params_billion) and 0 <= request.params_billion <= MAX_PARAMS_BILLION
    ):
        raise InvalidArgument(
            f"model_spec.params_billion must be a finite number from 0 to {MAX_PARAMS_BILLION}, "
            f"got {request.params_billion}"
        )
    entry, named_dtype = lookup(request.name) if request.name else (None, DEFAULT_DTYPE)
    if request.name and entry is None and request.params_billion <= 0:
        raise InvalidArgument(
            f"model {quoted(request.name)} is not in the model catalogue "
            f"({', '.join(sorted(LLM_CATALOGUE))}): give its size (--serve 70b, "
            "model_spec.params_billion)"
        )
    if not request.name and request.params_billion <= 0:
        raise InvalidArgument("model_spec needs a catalogue name or params_billion > 0")
    try:
        dtype = normalise_dtype(request.dtype) if request.dtype else named_dtype
    except ValueError as error:
        raise InvalidArgument(f"model_spec.dtype: {error}") from None
    utilization = request.memory_utilization or DEFAULT_UTILIZATION
    if not 0.1 <= utilization <= 1.0:
        raise InvalidArgument(
            f"model_spec.memory_utilization must be 0.1..1.0, got {request.memory_utilization}"
        )
    context = request.context_tokens or DEFAULT_CONTEXT_TOKENS
    if entry is not None and context > entry.max_context:
        raise InvalidArgument(
            f"model_spec.context_tokens {context} exceeds {entry.name}'s maximum "
            f"context of {entry.max_context}"
        )
    params = entry.params_billion if entry is not None else request.params_billion
    label = entry.name if entry is not None else f"a {params:g}B-parameter model"
    return ResolvedModel(
        label, params, dtype, context * max(1, request.concurrent_sequences), utilization, entry
    )


def infer_workload_class(workload_class: str, model: ResolvedModel, context: int) -> str:
    if workload_class != "unspecified":
        return workload_class
    if context >= LONG_CONTEXT_TOKENS:
        return "long-context"
    if model.params_billion <= SMALL_MODEL_BILLIONS:
        return "small-model"
    return workload_class


def choose_layout(
    request: ModelRequest,
    workload_class: str,
    capacity: Mapping[str, ModelCapacity],
    policy: GenerationPolicy | None,
) -> LayoutDecision:
    """The GPU model and smallest layout that hold `request` on a fleet of this
    capacity per GPU model; FailedPrecondition when no model can hold it."""
    model = resolve_model(request)
    context = request.context_tokens or DEFAULT_CONTEXT_TOKENS
    chosen_class = infer_workload_class(workload_class, model, context)
    lines = [
        f"{model.label} in {model.dtype}: weights {model.weights_mib / 1024:.1f} GiB, "
        f"KV cache for {model.kv_tokens} tokens {model.kv_mib / 1024:.1f} GiB, "
        f"{RUNTIME_RESERVE_MIB // 1024} GiB runtime reserve per GPU, "
        f"at {model.utilization:.0%} of GPU memory"
    ]
    if chosen_class != workload_class:
        lines.append(f"workload class inferred as {chosen_class}")
    tiers = _tiers(chosen_class, capacity, policy, model.quantized)
    for tier_name, tier in tiers:
        fits = []
        for gpu_model in sorted(tier):
            layout = _smallest_layout(model, gpu_model, capacity[gpu_model].domain)
            per_gpu = CATALOGUE[gpu_model].memory_mib if gpu_model in CATALOGUE else 0
            if layout is None:
                lines.append(f"{gpu_model} ({per_gpu // 1024} GiB): does not fit")
                continue
            if layout.world_size > capacity[gpu_model].total:
                lines.append(
                    f"{gpu_model} ({per_gpu // 1024} GiB): needs {layout.describe()}, "
                    f"more than the fleet's {capacity[gpu_model].total} GPUs"
                )
                continue
            warm = capacity[gpu_model].warm_standby
            note = " (warm standby there: no cold start)" if warm else ""
            lines.append(f"{gpu_model} ({per_gpu // 1024} GiB): fits at {layout.describe()}{note}")
            # Warm standby first (no cold start), then the fewest GPUs; latency-critical
            # work then takes the fastest part, the rest the cheapest that fits.
            speed = _weight(gpu_model) * (-1 if chosen_class == "latency-critical" else 1)
            fits.append((not warm, layout.world_size, speed, gpu_model, layout))
        if fits:
            best = min(fits)
            _, _, _, gpu_model, layout = best
            lines.append(_why_chosen(best, fits, tier_name, chosen_class))
            return LayoutDecision(
                gpu_model,
                layout,
                chosen_class,
                model.quantized,
                model.weights_mib,
                model.kv_mib,
                tuple(lines),
            )
    raise FailedPrecondition(
        f"no GPU model in this fleet allowed for class {chosen_class} can hold {model.label} "
        f"in {model.dtype} ({'; '.join(lines[1:]) or 'no candidate GPU models'})"
    )


_Fit = tuple[bool, int, float, str, ParallelLayout]  # (cold, GPUs, speed key, model, layout)


def _why_chosen(chosen: _Fit, fits: list[_Fit], tier_name: str, workload_class: str) -> str:
    """One line a person can follow: what won and what it beat."""
    cold, gpus, _, gpu_model, layout = chosen
    among = (
        "any GPU model of the fleet (no workload class given, so no tiers)"
        if tier_name == "any"
        else f"the {tier_name} tier for {workload_class}"
    )
    head = f"chose {gpu_model} {layout.describe()} from {among}: "
    plural = "s" if gpus > 1 else ""
    if not cold:
        smaller = sorted((f for f in fits if f[1] < gpus), key=lambda f: f[1])
        beaten = (
            f", which beats {smaller[0][3]} at {smaller[0][4].describe()} "
            f"({smaller[0][1]} GPU{'s' if smaller[0][1] > 1 else ''}, but a cold start)"
            if smaller
            else ""
        )
        return f"{head}it is warm there (standby copy: no cold start){beaten}"
    reason = f"the fewest GPUs ({gpus} GPU{plural})"
    tied = sorted(f[3] for f in fits if f[0] == cold and f[1] == gpus and f[3] != gpu_model)
    if tied:
        rule = "fastest" if workload_class == "latency-critical" else "cheapest"
        reason += f", and the {rule} of those that need as few (against {', '.join(tied)})"
    return head + reason


def _tiers(
    workload_class: str,
    capacity: Mapping[str, ModelCapacity],
    policy: GenerationPolicy | None,
    quantized: bool,
) -> list[tuple[str, frozenset[str]]]:
    """(name, models) per tier: primary, then overflow."""
    plan = policy.plan(workload_class, capacity, quantized) if policy else None
    if plan is None:
        return [("any", frozenset(capacity))] if capacity else []
    names = ("primary", "overflow") if len(plan.tiers) > 1 else ("allowed",)
    return list(zip(names, plan.tiers, strict=False))


def _weight(gpu_model: str) -> float:
    return CATALOGUE[gpu_model].throughput_weight if gpu_model in CATALOGUE else 0.0


def _smallest_layout(model: ResolvedModel, gpu_model: str, domain: int) -> ParallelLayout | None:
    """Smallest power-of-two TP (then PP stages) whose per-GPU share fits; None if none does."""
    if gpu_model not in CATALOGUE or domain < 1:
        return None
    usable = CATALOGUE[gpu_model].memory_mib * model.utilization - RUNTIME_RESERVE_MIB
    if usable <= 0:
        return None
    need = model.weights_mib + model.kv_mib
    tp = 1
    while tp <= domain:
        if need / tp <= usable:
            return ParallelLayout(tp=tp)
        tp *= 2
    tp //= 2
    pp = math.ceil(need / (tp * usable))
    if pp > MAX_PIPELINE_STAGES:
        return None
    return ParallelLayout(tp=tp, pp=pp)
