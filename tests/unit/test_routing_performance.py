"""The engine performance model against hand-computed roofline figures."""

from __future__ import annotations

import math

import pytest

from scheduler.domain.errors import InvalidArgument
from scheduler.serving.performance import (
    ITERATION_OVERHEAD_S,
    EngineSpec,
    engine_performance,
    resolve_gpu,
)

GIB = 1024**3


def test_prefill_speed_is_compute_over_two_flops_per_parameter() -> None:
    perf = engine_performance("H100-80GB", "llama-3.1-8b")
    # 989 TFLOP/s × 0.5 ÷ (2 × 8.03e9)
    assert perf.prefill_tokens_per_s == pytest.approx(989e12 * 0.5 / (2 * 8.03e9))


def test_tensor_parallel_scales_compute_with_an_all_reduce_penalty() -> None:
    one = engine_performance("H100-80GB", "llama-3.1-70b", dtype="fp16", gpu_count=1)
    two = engine_performance("H100-80GB", "llama-3.1-70b", dtype="fp16", gpu_count=2)
    assert two.flops_per_s == pytest.approx(one.flops_per_s * 2 * 0.9)
    assert two.bandwidth_bytes_per_s == pytest.approx(one.bandwidth_bytes_per_s * 2)


def test_kv_capacity_is_memory_left_after_weights_and_reserve() -> None:
    perf = engine_performance("A100-80GB", "llama-3.1-8b")
    kv_per_token = 2 * 8 * 128 * 32 * 2  # K and V, 8 heads × 128, 32 layers, bf16
    assert perf.kv_bytes_per_token == kv_per_token
    free = 80 * GIB * 0.9 - round(8.03e9 * 2) - 2 * GIB
    assert perf.kv_capacity_tokens == int(free // kv_per_token)
    assert perf.kv_capacity_blocks == perf.kv_capacity_tokens // 16
    assert perf.fits


def test_a_model_too_big_for_the_gpu_has_no_kv_cache() -> None:
    perf = engine_performance("A100-40GB", "llama-3.1-70b", dtype="fp16")
    assert perf.kv_capacity_tokens == 0
    assert not perf.fits


def test_int4_weights_decode_faster_but_prefill_at_the_same_flops() -> None:
    fp16 = engine_performance("A100-80GB", "llama-3.1-70b", dtype="fp16", gpu_count=2)
    int4 = engine_performance("A100-80GB", "llama-3.1-70b", dtype="int4", gpu_count=2)
    assert int4.prefill_tokens_per_s == pytest.approx(fp16.prefill_tokens_per_s)
    assert int4.per_sequence_decode_tokens_per_s() > fp16.per_sequence_decode_tokens_per_s()
    assert int4.kv_capacity_tokens > fp16.kv_capacity_tokens


def test_single_sequence_decode_is_memory_bound() -> None:
    perf = engine_performance("H100-80GB", "llama-3.1-8b")
    step = ITERATION_OVERHEAD_S + round(8.03e9 * 2) / (3350e9 * 0.8)
    assert perf.per_sequence_decode_tokens_per_s(1, 0) == pytest.approx(1 / step)


def test_batching_raises_throughput_and_lowers_per_sequence_speed() -> None:
    perf = engine_performance("H100-80GB", "llama-3.1-8b")
    speeds = [perf.decode_tokens_per_s(b, 1000) for b in (1, 8, 64, 256)]
    assert speeds == sorted(speeds)
    assert perf.per_sequence_decode_tokens_per_s(256, 1000) < perf.per_sequence_decode_tokens_per_s(
        1, 1000
    )
    assert perf.decode_tokens_per_s(0) == 0.0


def test_large_batches_become_compute_bound() -> None:
    perf = engine_performance("H100-80GB", "llama-3.1-8b")
    batch = 100_000  # absurd, but the compute term must take over
    compute_s = batch * 2 * 8.03e9 / perf.flops_per_s
    assert perf.iteration_s(batch, 0) == pytest.approx(ITERATION_OVERHEAD_S + compute_s)


def test_prefill_attention_grows_quadratically_and_cache_hits_save_work() -> None:
    perf = engine_performance("H100-80GB", "llama-3.1-8b")
    linear = 2 * 8.03e9 * 1000
    attention = 2 * 32 * 4096 * (3000**2 - 2000**2)
    assert perf.prefill_flops(1000, cached_tokens=2000) == pytest.approx(linear + attention)
    assert perf.prefill_s(4000) > 2 * perf.prefill_s(2000)
    assert perf.ttft_s(8000, cached_tokens=6000) < perf.ttft_s(8000)
    # Fully cached: only the overhead (and nothing negative for over-reported hits).
    assert perf.ttft_s(1000, cached_tokens=5000) == pytest.approx(ITERATION_OVERHEAD_S)


def test_ttft_adds_the_queue_ahead() -> None:
    perf = engine_performance("B200", "llama-3.1-8b")
    assert perf.ttft_s(1000, queued_prefill_s=2.0) == pytest.approx(2.0 + perf.ttft_s(1000))


def test_faster_hardware_is_faster_everywhere() -> None:
    a100 = engine_performance("A100-80GB", "llama-3.1-8b")
    h100 = engine_performance("H100", "llama-3.1-8b")
    b200 = engine_performance("B200", "llama-3.1-8b")
    assert a100.prefill_tokens_per_s < h100.prefill_tokens_per_s < b200.prefill_tokens_per_s
    assert a100.decode_s_per_token > h100.decode_s_per_token > b200.decode_s_per_token
    assert math.isfinite(b200.decode_s_per_token)


def test_dtype_comes_from_the_model_name() -> None:
    perf = engine_performance("A100-80GB", "llama-3.1-70b-awq")
    assert perf.spec.dtype == "int4"
    assert perf.weight_bytes == round(70.6e9 * 0.5)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"gpu_model": "Z80", "model": "llama-3.1-8b"}, "gpu_model"),
        ({"gpu_model": "H100", "model": "gpt-9"}, "model"),
        ({"gpu_model": "H100", "model": "llama-3.1-8b", "dtype": "int3"}, "dtype"),
        ({"gpu_model": "H100", "model": "llama-3.1-8b", "gpu_count": 3}, "gpu_count"),
    ],
)
def test_bad_input_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument, match=field):
        engine_performance(**kwargs)  # type: ignore[arg-type]


def test_spec_normalises_dtypes() -> None:
    spec = EngineSpec(
        gpu=resolve_gpu("B200"), llm=engine_performance("B200", "mistral-7b").spec.llm, dtype="half"
    )
    assert spec.dtype == "fp16"
