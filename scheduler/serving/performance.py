"""The one performance model of an inference engine replica.

The simulated engine (scheduler/serving/engine_sim), the router's replay
(`gpupool route-sim`) and the routing policies all take their speeds from
here, so a replay and a live simulated engine agree. It is a roofline model
over the GPU catalogue's datasheet figures (scheduler/domain/catalogue.py:
memory bandwidth, BF16 FLOP/s) and the LLM catalogue's sizes
(scheduler/domain/llm_catalogue.py). Pure: no I/O, no clock.

Notation: P parameters, L layers, d hidden size, W = P × bytes(dtype) weight
bytes, k = KV bytes per token (2 × kv heads × head dim × L × bytes(kv dtype)),
g = GPUs of the replica (tensor parallel), BW = g × bandwidth × 0.80 and
C = g × BF16 FLOP/s × 0.50 × 0.90^log2(g) the achievable bandwidth and
compute (0.80, 0.50: the share of the datasheet figure that vLLM-class engines
reach on decode and long prefills; 0.90 per doubling of TP: the all-reduces).

- **Prefill** of n new tokens after c cached ones is compute-bound:
  FLOPs = 2·P·n (the linear layers) + 2·L·d·((c + n)² - c²) (causal
  attention); prefill time = FLOPs ÷ C. `prefill_tokens_per_s` is 2·P ÷ C
  inverted (linear part only: the headline figure).
  Weight-only quantisation (int4/int8 on A100) dequantises to BF16 tensor
  cores, so prefill FLOP/s do not change with the weight dtype; fp8 is taken
  at the BF16 rate too (conservative: the catalogue has no FP8 column).
- **One engine iteration** (continuous batching with chunked prefill) runs
  q prefill tokens and b decoding sequences holding T context tokens:
  time = 3 ms + max((W + T·k) ÷ BW, (prefill FLOPs(q) + 2·P·b) ÷ C).
  Decode is memory-bound (every step reads the weights and the batch's KV)
  until b is large, then compute-bound.
- **Decode** speed of a batch of b sequences of mean context t: b ÷ the
  iteration time with q = 0; one sequence's speed is 1 ÷ that time.
- **KV cache capacity** = g × GPU memory × 0.90 (vLLM's
  gpu_memory_utilization) - W - g × 2 GiB (runtime, activations, CUDA graphs),
  divided by k; in blocks of `block_tokens` (vLLM: 16).
- **TTFT estimate** = (prefill work queued ahead + this prompt's uncached
  prefill) ÷ C, plus one iteration's overhead.

Figures for llama-3.1-8b in bf16 on one H100-80GB: prefill about 30,800
prompt tokens/s, a single sequence decodes at about 110 tokens/s (256 at once:
about 11,700 tokens/s in all), and the KV cache holds about 450,000 tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from scheduler.domain.catalogue import CATALOGUE, GpuModel, resolve_model_name
from scheduler.domain.errors import InvalidArgument, quoted
from scheduler.domain.llm_catalogue import (
    DTYPE_BYTES,
    LLM_CATALOGUE,
    LlmModel,
    lookup,
    normalise_dtype,
)

# Share of the datasheet figures an engine reaches (see the module docstring).
BANDWIDTH_EFFICIENCY = 0.80
COMPUTE_EFFICIENCY = 0.50
TP_EFFICIENCY_PER_DOUBLING = 0.90
MEMORY_UTILIZATION = 0.90
RUNTIME_RESERVE_BYTES_PER_GPU = 2 * 1024**3
# Scheduling, sampling and kernel launches per engine iteration.
ITERATION_OVERHEAD_S = 0.003
DEFAULT_BLOCK_TOKENS = 16
DEFAULT_MAX_NUM_SEQS = 256
# Chunked prefill budget per iteration (tokens of prefill and decode together).
DEFAULT_MAX_BATCHED_TOKENS = 2048

_GPU_ALIASES = {"h100": "H100-80GB", "a100": "A100-80GB", "a100-80": "A100-80GB"}


def resolve_gpu(name: str) -> GpuModel:
    """A catalogue GPU by name, NVML name or short alias ("H100", "A100-40GB")."""
    model = resolve_model_name(name) or CATALOGUE.get(_GPU_ALIASES.get(name.strip().lower(), ""))
    if model is None:
        known = ", ".join(CATALOGUE)
        raise InvalidArgument(f"gpu_model {quoted(name)} is not in the catalogue (known: {known})")
    return model


def resolve_llm(name: str) -> tuple[LlmModel, str]:
    """(catalogue LLM, dtype the name carries or bf16); InvalidArgument if unknown."""
    model, dtype = lookup(name)
    if model is None:
        known = ", ".join(LLM_CATALOGUE)
        raise InvalidArgument(f"model {quoted(name)} is not in the LLM catalogue (known: {known})")
    return model, dtype


@dataclass(frozen=True)
class EngineSpec:
    """What determines a replica's speed: its GPUs, the model and the engine's knobs."""

    gpu: GpuModel
    llm: LlmModel
    dtype: str = "bf16"  # weights
    gpu_count: int = 1  # tensor parallel degree
    kv_dtype: str = "bf16"
    block_tokens: int = DEFAULT_BLOCK_TOKENS
    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS
    max_batched_tokens: int = DEFAULT_MAX_BATCHED_TOKENS
    memory_utilization: float = MEMORY_UTILIZATION

    def __post_init__(self) -> None:
        if self.gpu_count < 1 or self.gpu_count & (self.gpu_count - 1):
            raise InvalidArgument(f"gpu_count must be a power of two ≥ 1, not {self.gpu_count}")
        if self.block_tokens < 1:
            raise InvalidArgument("block_tokens must be at least 1")
        if self.max_num_seqs < 1 or self.max_batched_tokens < 1:
            raise InvalidArgument("max_num_seqs and max_batched_tokens must be at least 1")
        if not 0 < self.memory_utilization <= 1:
            raise InvalidArgument("memory_utilization must be in (0, 1]")
        object.__setattr__(self, "dtype", normalise_dtype(self.dtype))
        object.__setattr__(self, "kv_dtype", normalise_dtype(self.kv_dtype))


@dataclass(frozen=True)
class EnginePerformance:
    """Speeds and capacity of one replica, derived once from its EngineSpec."""

    spec: EngineSpec
    weight_bytes: int = field(init=False)
    kv_bytes_per_token: int = field(init=False)
    bandwidth_bytes_per_s: float = field(init=False)
    flops_per_s: float = field(init=False)
    kv_capacity_tokens: int = field(init=False)

    def __post_init__(self) -> None:
        spec = self.spec
        g = spec.gpu_count
        weights = round(spec.llm.params_billion * 1e9 * DTYPE_BYTES[spec.dtype])
        kv = spec.llm.kv_bytes_per_token(spec.kv_dtype)
        tp_eff = TP_EFFICIENCY_PER_DOUBLING ** math.log2(g)
        set_ = object.__setattr__
        set_(self, "weight_bytes", weights)
        set_(self, "kv_bytes_per_token", kv)
        set_(
            self,
            "bandwidth_bytes_per_s",
            g * spec.gpu.memory_bandwidth_gbps * 1e9 * BANDWIDTH_EFFICIENCY,
        )
        set_(self, "flops_per_s", g * spec.gpu.bf16_tflops * 1e12 * COMPUTE_EFFICIENCY * tp_eff)
        memory = g * spec.gpu.memory_mib * 1024**2 * spec.memory_utilization
        free = memory - weights - g * RUNTIME_RESERVE_BYTES_PER_GPU
        set_(self, "kv_capacity_tokens", max(0, int(free // kv)))

    # -- capacity -----------------------------------------------------------
    @property
    def fits(self) -> bool:
        """Whether the weights leave room for at least one block of KV cache."""
        return self.kv_capacity_tokens >= self.spec.block_tokens

    @property
    def kv_capacity_blocks(self) -> int:
        return self.kv_capacity_tokens // self.spec.block_tokens

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.spec.block_tokens)

    # -- prefill ------------------------------------------------------------
    @property
    def prefill_tokens_per_s(self) -> float:
        """Headline prefill speed: prompt tokens per second, linear layers only."""
        return self.flops_per_s / (2 * self.spec.llm.params_billion * 1e9)

    def prefill_flops(self, new_tokens: int, cached_tokens: int = 0) -> float:
        """FLOPs to prefill `new_tokens` after `cached_tokens` already in the KV cache."""
        llm = self.spec.llm
        end = cached_tokens + new_tokens
        attention = (
            2 * llm.num_layers * llm.hidden_size * (end * end - cached_tokens * cached_tokens)
        )
        return 2 * llm.params_billion * 1e9 * new_tokens + attention

    @property
    def attention_s_per_token2(self) -> float:
        """Seconds of causal attention per (token²) of prefilled context: 2·L·d ÷ C."""
        llm = self.spec.llm
        return 2 * llm.num_layers * llm.hidden_size / self.flops_per_s

    def prefill_s(self, new_tokens: int, cached_tokens: int = 0) -> float:
        """Seconds of GPU time to prefill `new_tokens` (compute-bound)."""
        return self.prefill_flops(new_tokens, cached_tokens) / self.flops_per_s

    # -- iterations and decode ---------------------------------------------
    def iteration_s(
        self, decode_seqs: int, context_tokens: int, prefill_flops: float = 0.0
    ) -> float:
        """One engine step: `decode_seqs` sequences holding `context_tokens` KV tokens
        in all decode one token each, alongside a prefill chunk of `prefill_flops`."""
        memory_s = (self.weight_bytes + context_tokens * self.kv_bytes_per_token) / (
            self.bandwidth_bytes_per_s
        )
        compute = prefill_flops + decode_seqs * 2 * self.spec.llm.params_billion * 1e9
        return ITERATION_OVERHEAD_S + max(memory_s, compute / self.flops_per_s)

    def decode_tokens_per_s(self, batch: int = 1, mean_context: int = 0) -> float:
        """Output tokens per second of the whole batch (b sequences of mean context t)."""
        if batch <= 0:
            return 0.0
        return batch / self.iteration_s(batch, batch * mean_context)

    def per_sequence_decode_tokens_per_s(self, batch: int = 1, mean_context: int = 0) -> float:
        """One sequence's output tokens per second inside a batch of `batch`."""
        return 1.0 / self.iteration_s(max(batch, 1), max(batch, 1) * mean_context)

    @property
    def decode_s_per_token(self) -> float:
        """GPU seconds one output token costs at the engine's full batch (its marginal
        decode cost, used to weigh pending output tokens against prompt tokens)."""
        batch = self.spec.max_num_seqs
        return 1.0 / self.decode_tokens_per_s(batch, 1024)

    # -- latency ------------------------------------------------------------
    def ttft_s(
        self, prompt_tokens: int, cached_tokens: int = 0, queued_prefill_s: float = 0.0
    ) -> float:
        """Expected time to first token: the prefill work queued ahead (in GPU seconds),
        this prompt's uncached prefill, and one iteration's overhead."""
        cached = min(cached_tokens, prompt_tokens)
        return (
            queued_prefill_s + self.prefill_s(prompt_tokens - cached, cached) + ITERATION_OVERHEAD_S
        )


def engine_performance(
    gpu_model: str,
    model: str,
    *,
    dtype: str | None = None,
    gpu_count: int = 1,
    kv_dtype: str = "bf16",
    block_tokens: int = DEFAULT_BLOCK_TOKENS,
    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS,
    max_batched_tokens: int = DEFAULT_MAX_BATCHED_TOKENS,
) -> EnginePerformance:
    """The performance of `model` (catalogue name or HF id, dtype from the name
    unless given) on `gpu_count` GPUs of `gpu_model`."""
    llm, named_dtype = resolve_llm(model)
    try:
        weights_dtype = normalise_dtype(dtype or named_dtype)
        kv = normalise_dtype(kv_dtype)
    except ValueError as exc:
        raise InvalidArgument(f"dtype: {exc}") from None
    spec = EngineSpec(
        gpu=resolve_gpu(gpu_model),
        llm=llm,
        dtype=weights_dtype,
        gpu_count=gpu_count,
        kv_dtype=kv,
        block_tokens=block_tokens,
        max_num_seqs=max_num_seqs,
        max_batched_tokens=max_batched_tokens,
    )
    return EnginePerformance(spec)
