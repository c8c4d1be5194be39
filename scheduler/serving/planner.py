"""The capacity planner behind `gpupool plan`: how to split N GPUs into replicas.

For each tensor-parallel degree (1, 2, 4, 8) it splits `gpus` GPUs of one
model into N ÷ TP replicas and estimates, from the one engine performance
model (scheduler/serving/performance.py: a roofline over the catalogue's
memory bandwidth and BF16 FLOP/s and the LLM catalogue's sizes):

- **batch** b = min(max_num_seqs, KV capacity ÷ (P + O)): the sequences
  whose whole context fits the replica's KV cache at once;
- **per-request GPU time** S = prefill(P) + O × iteration(b) ÷ b (continuous
  batching: each engine step decodes one token of each of b sequences and
  its time is shared by them), where iteration(b) is the step time with b
  sequences of mean context P + O ÷ 2;
- **peak throughput** per replica = (P + O) ÷ S tokens/s; the aggregate is
  replicas × that;
- **latency** of one request unloaded: TTFT = prefill(P) + one step's
  overhead, then O tokens at one step each: TTFT + O × iteration(b);
  "relative" divides by the best row's;
- **with a TTFT SLO**: prefill gets the GPU time the rest of the load leaves,
  so TTFT(u) ≈ TTFT ÷ (1 - u) at utilisation u; the usable utilisation is
  u = 1 - TTFT ÷ SLO (none when TTFT alone exceeds the SLO), and throughput
  is u × peak. Without an SLO the table shows the peak (u = 1);
- **cost per million tokens** = GPUs × price per hour ÷ tokens per hour × 10^6
  (tokens: prompt + output), at that throughput.

Defaults: P = 1024 prompt tokens, O = 256 output tokens, on-demand prices.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from scheduler.domain.errors import InvalidArgument
from scheduler.serving.cost import cost_per_million_tokens
from scheduler.serving.performance import engine_performance

TP_DEGREES = (1, 2, 4, 8)
DEFAULT_PROMPT_TOKENS = 1024
DEFAULT_OUTPUT_TOKENS = 256


@dataclass(frozen=True)
class PlanInput:
    model: str
    gpu_model: str
    gpus: int
    dtype: str | None = None  # None: the model name's, else bf16
    prompt_tokens: int = DEFAULT_PROMPT_TOKENS
    output_tokens: int = DEFAULT_OUTPUT_TOKENS
    ttft_slo_s: float | None = None
    price_per_gpu_hour: float = 0.0


@dataclass(frozen=True)
class PlanRow:
    tp: int
    replicas: int
    fits: bool
    reason: str = ""  # why a row is not an option
    batch: int = 0
    kv_capacity_tokens: int = 0
    ttft_s: float = 0.0
    tpot_s: float = 0.0  # seconds per output token of one sequence at batch b
    latency_s: float = 0.0  # TTFT + O × tpot
    relative_latency: float = 0.0
    utilisation: float = 0.0  # of the peak, 1.0 without an SLO
    tokens_per_s: float = 0.0  # aggregate, prompt + output
    cost_per_million_tokens: float | None = None

    @property
    def gpus_per_replica(self) -> int:
        return self.tp


def plan(request: PlanInput) -> list[PlanRow]:
    """One row per TP degree (see the module docstring)."""
    _check(request)
    rows = [_row(request, tp) for tp in TP_DEGREES]
    best = min((r.latency_s for r in rows if r.fits), default=0.0)
    return [
        replace(r, relative_latency=r.latency_s / best) if r.fits and best > 0 else r for r in rows
    ]


def _check(request: PlanInput) -> None:
    if not 1 <= request.gpus <= 100_000:
        raise InvalidArgument(f"gpus must be 1..100000, got {request.gpus}")
    if not 1 <= request.prompt_tokens <= 1_000_000:
        raise InvalidArgument(f"prompt_tokens must be 1..1000000, got {request.prompt_tokens}")
    if not 1 <= request.output_tokens <= 1_000_000:
        raise InvalidArgument(f"output_tokens must be 1..1000000, got {request.output_tokens}")
    if request.ttft_slo_s is not None and not 0 < request.ttft_slo_s <= 3600:
        raise InvalidArgument(f"ttft_slo must be in (0, 3600] s, got {request.ttft_slo_s}")
    if request.price_per_gpu_hour < 0:
        raise InvalidArgument("the price per GPU-hour must not be negative")


def _row(request: PlanInput, tp: int) -> PlanRow:
    replicas = request.gpus // tp
    if replicas == 0:
        return PlanRow(tp, 0, False, f"fewer than {tp} GPUs")
    perf = engine_performance(request.gpu_model, request.model, dtype=request.dtype, gpu_count=tp)
    p, o = request.prompt_tokens, request.output_tokens
    context = p + o
    if perf.kv_capacity_tokens < context:
        need = perf.weight_bytes / 1e9
        return PlanRow(
            tp,
            replicas,
            False,
            f"weights {need:.0f} GB leave KV room for {perf.kv_capacity_tokens} tokens "
            f"on {tp}× {request.gpu_model} (one request needs {context})",
            kv_capacity_tokens=perf.kv_capacity_tokens,
        )
    batch = min(perf.spec.max_num_seqs, perf.kv_capacity_tokens // context)
    step = perf.iteration_s(batch, batch * (p + o // 2))
    ttft = perf.ttft_s(p)
    gpu_time = perf.prefill_s(p) + o * step / batch
    peak = (p + o) / gpu_time
    utilisation = 1.0
    reason = ""
    if request.ttft_slo_s is not None:
        utilisation = max(0.0, 1.0 - ttft / request.ttft_slo_s)
        if utilisation == 0.0:
            reason = f"TTFT {ttft:.2f} s alone exceeds the {request.ttft_slo_s:g} s SLO"
    tokens_per_s = replicas * peak * utilisation
    cost = (
        cost_per_million_tokens(replicas * tp, request.price_per_gpu_hour, tokens_per_s * 3600)
        if tokens_per_s > 0 and request.price_per_gpu_hour > 0
        else None
    )
    return PlanRow(
        tp,
        replicas,
        True,
        reason,
        batch=batch,
        kv_capacity_tokens=perf.kv_capacity_tokens,
        ttft_s=ttft,
        tpot_s=step,
        latency_s=ttft + o * step,
        utilisation=utilisation,
        tokens_per_s=tokens_per_s,
        cost_per_million_tokens=cost,
    )


def assumptions(request: PlanInput) -> list[str]:
    """The lines `gpupool plan` prints under its table."""
    lines = [
        f"requests of {request.prompt_tokens} prompt + {request.output_tokens} output tokens; "
        "throughput counts both",
        "roofline engine model (scheduler/serving/performance.py): 80 % of datasheet memory "
        "bandwidth for decode, 50 % of BF16 FLOP/s for prefill, 10 % lost per TP doubling, "
        "90 % of GPU memory with 2 GiB per GPU reserved",
        "batch = sequences whose whole context fits the KV cache (at most 256); "
        "continuous batching shares each step among them",
        "latency = TTFT + output tokens × step time, unloaded; relative to the best row",
    ]
    if request.ttft_slo_s is not None:
        lines.append(
            f"TTFT under load ≈ TTFT ÷ (1 - utilisation); throughput at the utilisation that "
            f"keeps it ≤ {request.ttft_slo_s:g} s"
        )
    else:
        lines.append("throughput at full utilisation (no TTFT SLO given)")
    lines.append(
        f"cost = GPUs × {request.price_per_gpu_hour:.2f}/GPU-hour ÷ tokens per hour × 10^6"
    )
    return lines
