"""Automatic layout: GPU model and the smallest TP degree that holds a model."""

from __future__ import annotations

import pytest

from scheduler.domain.auto_layout import (
    LayoutDecision,
    ModelCapacity,
    ModelRequest,
    choose_layout,
    resolve_model,
)
from scheduler.domain.errors import FailedPrecondition, InvalidArgument
from scheduler.domain.generations import DEFAULT_GENERATION_POLICY
from scheduler.domain.layout import ParallelLayout

EIGHTY_GB = {"H100-80GB": 8, "A100-80GB": 8}
MIXED = {"B200": 8, "H200": 8, "H100-80GB": 8, "A100-80GB": 8, "A100-40GB": 4, "L40S": 4}


def choose(
    request: ModelRequest, workload_class: str = "unspecified", fleet: dict[str, int] = EIGHTY_GB
) -> LayoutDecision:
    """On a fleet of two nodes per model, `fleet[model]` GPUs each."""
    capacity = {model: ModelCapacity(count, 2 * count) for model, count in fleet.items()}
    return choose_layout(request, workload_class, capacity, DEFAULT_GENERATION_POLICY)


def test_70b_fp16_needs_tp2_on_80gb_parts() -> None:
    decision = choose(ModelRequest(name="llama-3.1-70b", dtype="fp16"), "latency-critical")
    assert decision.gpu_model == "H100-80GB"
    assert decision.layout == ParallelLayout(tp=2)
    assert any("fits at tp=2" in line for line in decision.explanation)
    assert decision.explanation[-1].startswith("chose H100-80GB tp=2")


def test_70b_int4_fits_one_gpu() -> None:
    decision = choose(ModelRequest(name="llama-3.1-70b", dtype="int4"), "latency-critical")
    assert decision.layout == ParallelLayout(tp=1)
    assert decision.quantized


def test_a_long_kv_budget_raises_tp() -> None:
    short = choose(ModelRequest(name="llama-3.1-70b"), "latency-critical")
    long = choose(
        ModelRequest(name="llama-3.1-70b", context_tokens=32768, concurrent_sequences=16),
        "latency-critical",
    )
    assert long.layout.tp > short.layout.tp
    assert long.kv_cache_mib == 16 * 32768 * 327680 // (1024 * 1024)


def test_405b_adds_pipeline_stages_when_one_node_is_too_small() -> None:
    decision = choose(ModelRequest(name="llama-3.1-405b"), "throughput", {"A100-80GB": 8})
    assert decision.layout.tp == 8
    assert decision.layout.pp == 2


def test_small_models_are_inferred_and_go_to_a100_40() -> None:
    decision = choose(ModelRequest(name="llama-3.1-8b"), fleet=MIXED)
    assert decision.workload_class == "small-model"
    assert decision.gpu_model == "A100-40GB"
    assert "workload class inferred as small-model" in decision.explanation


def test_long_context_is_inferred_and_takes_the_largest_memory() -> None:
    decision = choose(ModelRequest(name="llama-3.1-70b", context_tokens=131072), fleet=MIXED)
    assert decision.workload_class == "long-context"
    assert decision.gpu_model == "B200"


def test_throughput_fp8_may_overflow_to_a100_40() -> None:
    fleet = {"A100-40GB": 4}
    with pytest.raises(FailedPrecondition):
        choose(ModelRequest(params_billion=30), "throughput", fleet)
    decision = choose(ModelRequest(params_billion=30, dtype="fp8"), "throughput", fleet)
    assert decision.gpu_model == "A100-40GB"


def test_a_model_no_fleet_gpu_holds_is_failed_precondition() -> None:
    with pytest.raises(FailedPrecondition, match="can hold deepseek-v3"):
        choose(ModelRequest(name="deepseek-v3"), "latency-critical", {"H100-80GB": 2})


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (ModelRequest(name="gpt-9"), "not in the model catalogue"),
        (ModelRequest(), "needs a catalogue name or params_billion"),
        (ModelRequest(params_billion=7, dtype="fp6"), "unknown dtype"),
        (ModelRequest(name="mistral-7b", context_tokens=10**6), "exceeds mistral-7b's maximum"),
        (ModelRequest(params_billion=7, memory_utilization=1.5), "memory_utilization"),
    ],
)
def test_bad_model_specs_are_invalid_argument(request_: ModelRequest, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        resolve_model(request_)


def test_warm_standby_beats_fewer_gpus() -> None:
    capacity = {
        "B200": ModelCapacity(8, 8),
        "H200": ModelCapacity(8, 8, warm_standby=True),
    }
    decision = choose_layout(
        ModelRequest(name="llama-3.1-70b", dtype="fp16"),
        "latency-critical",
        capacity,
        DEFAULT_GENERATION_POLICY,
    )
    assert (decision.gpu_model, decision.layout.tp) == ("H200", 2)
    why = decision.explanation[-1]
    assert "warm there (standby copy: no cold start)" in why
    assert "which beats B200 at tp=1 (1 GPU, but a cold start)" in why, "says what it beat"


def test_without_a_workload_class_the_choice_says_there_are_no_tiers() -> None:
    capacity = {"B200": ModelCapacity(8, 8), "H200": ModelCapacity(8, 8)}
    decision = choose_layout(
        ModelRequest(name="llama-3.1-70b", dtype="fp8"), "", capacity, DEFAULT_GENERATION_POLICY
    )
    why = decision.explanation[-1]
    assert "tier for unspecified" not in why and " any tier" not in why
    assert why.startswith(f"chose {decision.gpu_model} ")
    assert "the fewest GPUs (1 GPU)" in why
