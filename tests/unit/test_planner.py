"""The capacity planner against a hand-computed example."""

from __future__ import annotations

from dataclasses import replace

import pytest

from scheduler.domain.errors import InvalidArgument
from scheduler.serving.planner import PlanInput, assumptions, plan

# llama-3.1-70b in fp16 on 16 H100-80GB, 1024 prompt + 256 output tokens, $2.99/GPU-hour.
REQUEST = PlanInput("llama-3.1-70b", "H100-80GB", 16, dtype="fp16", price_per_gpu_hour=2.99)


def test_tp4_by_hand() -> None:
    row = {r.tp: r for r in plan(REQUEST)}[4]
    # Weights 70.6e9 × 2 B = 141.2 GB; KV 2 × 8 heads × 128 × 80 layers × 2 B = 327,680 B/token.
    # KV room: 4 × 80 GiB × 0.9 - 141.2e9 - 4 × 2 GiB = 159,447,710,720 B → 486,595 tokens.
    assert row.replicas == 4 and row.gpus_per_replica == 4
    assert row.kv_capacity_tokens == 486_595
    # 486,595 // 1,280 = 380 sequences fit; the engine runs at most 256.
    assert row.batch == 256
    # Step: memory (141.2e9 + 256 × 1,152 × 327,680) ÷ (4 × 3,350e9 × 0.8) = 22.19 ms,
    # compute 256 × 2 × 70.6e9 ÷ (4 × 989e12 × 0.5 × 0.81) = 22.56 ms; + 3 ms overhead.
    assert row.tpot_s == pytest.approx(0.02556, rel=1e-3)
    # TTFT: (2 × 70.6e9 × 1024 + 2 × 80 × 8192 × 1024²) ÷ 1,602.18e12 = 91.1 ms, + 3 ms.
    assert row.ttft_s == pytest.approx(0.0941, rel=1e-3)
    # GPU time per request 91.1 ms + 256 × 25.56 ms ÷ 256 = 116.7 ms → 1,280 ÷ 0.1167
    # = 10,971 tokens/s per replica, 43,885 for four.
    assert row.tokens_per_s == pytest.approx(43_885, rel=2e-3)
    # 16 × $2.99 ÷ (43,885 × 3,600 tokens/h) × 10^6 = $0.3028 per million tokens.
    assert row.cost_per_million_tokens == pytest.approx(0.3028, rel=2e-3)


def test_tp1_does_not_fit_and_the_fastest_row_is_the_latency_reference() -> None:
    rows = plan(REQUEST)
    assert [r.tp for r in rows] == [1, 2, 4, 8]
    assert not rows[0].fits and "141 GB" in rows[0].reason
    fitting = [r for r in rows if r.fits]
    assert min(r.relative_latency for r in fitting) == pytest.approx(1.0)
    # TP=8 has the lowest latency; TP=2's small KV cache limits its batch.
    assert rows[3].relative_latency == pytest.approx(1.0)
    assert rows[1].batch < rows[2].batch


def test_a_ttft_slo_caps_the_utilisation() -> None:
    rows = {r.tp: r for r in plan(replace(REQUEST, ttft_slo_s=2.0))}
    row = rows[4]
    # 1 - 0.0941 ÷ 2 = 0.953 of the peak.
    assert row.utilisation == pytest.approx(1 - 0.0941 / 2, rel=1e-3)
    assert row.tokens_per_s == pytest.approx(43_885 * row.utilisation, rel=2e-3)
    tight = {r.tp: r for r in plan(replace(REQUEST, ttft_slo_s=0.05))}
    assert tight[2].tokens_per_s == 0 and "exceeds the 0.05 s SLO" in tight[2].reason
    assert any("≤ 0.05 s" in line for line in assumptions(replace(REQUEST, ttft_slo_s=0.05)))


def test_bad_input_names_the_field() -> None:
    with pytest.raises(InvalidArgument, match="gpus"):
        plan(PlanInput("llama-3.1-70b", "H100-80GB", 0))
    with pytest.raises(InvalidArgument, match="gpu_model"):
        plan(PlanInput("llama-3.1-70b", "Z9000", 8))
    with pytest.raises(InvalidArgument, match="model"):
        plan(PlanInput("llama-9", "H100-80GB", 8))
