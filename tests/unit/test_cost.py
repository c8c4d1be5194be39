"""Cost formulas and the price table, against hand-computed figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scheduler.domain.catalogue import CATALOGUE
from scheduler.domain.errors import InvalidArgument, NotFound
from scheduler.serving.cost import (
    HeldInterval,
    binding_gpus,
    cost_lines,
    cost_per_million_tokens,
    money_per_million_tokens,
    totals_by,
)
from scheduler.serving.prices import load_prices, parse_prices

T0 = datetime(2026, 12, 1, tzinfo=UTC)
PRICES = parse_prices(
    """
currency: USD
gpus:
  H100-80GB: {on_demand_per_hour: 3.00, spot_per_hour: 1.50}
  A100-80GB: {on_demand_per_hour: 2.00, spot_per_hour: 1.00}
"""
)


def hours(h: float) -> datetime:
    return T0 + timedelta(hours=h)


def test_cost_per_million_tokens_is_the_issue_formula() -> None:
    # 8 H100 at $3/h serving 10,000 tokens/s = 36,000,000 tokens/h:
    # 8 × 3 ÷ 36e6 × 1e6 = $0.6667 per million tokens.
    assert cost_per_million_tokens(8, 3.0, 36_000_000) == pytest.approx(0.666_666_7)
    # The same over history: $24 for 36 million tokens.
    assert money_per_million_tokens(24.0, 36_000_000) == pytest.approx(0.666_666_7)
    assert money_per_million_tokens(24.0, 0) is None
    with pytest.raises(ValueError):
        cost_per_million_tokens(1, 3.0, 0)


def test_gpu_hours_and_money_per_tenant_and_deployment() -> None:
    intervals = [
        # chat's deployment: 4 H100 on demand for 2 h, then 2 more on spot for 1 h.
        HeldInterval("a1", "chat", "llama", "H100-80GB", 4, False, hours(0), hours(2)),
        HeldInterval("a2", "chat", "llama", "H100-80GB", 2, True, hours(1), hours(2)),
        # a batch job of chat's with no deployment: half an A100 for 3 h.
        HeldInterval("a3", "chat", "", "A100-80GB", 0.5, False, hours(0), hours(3)),
        # another tenant: one A100 for 30 minutes.
        HeldInterval("a4", "search", "", "A100-80GB", 1, False, hours(1), hours(1.5)),
    ]
    lines = cost_lines(intervals, PRICES, None, hours(10))
    by_key = {(x.tenant, x.deployment, x.gpu_model, x.spot): x for x in lines}
    assert by_key["chat", "llama", "H100-80GB", False].gpu_hours == pytest.approx(8.0)
    assert by_key["chat", "llama", "H100-80GB", False].money == pytest.approx(24.0)
    assert by_key["chat", "llama", "H100-80GB", True].money == pytest.approx(3.0)  # 2 GPU-h × 1.5
    assert by_key["chat", "", "A100-80GB", False].money == pytest.approx(3.0)  # 1.5 GPU-h × 2
    assert by_key["search", "", "A100-80GB", False].money == pytest.approx(1.0)
    per_tenant = {
        t: (round(h, 6), round(m, 6)) for t, _, h, m in totals_by(lines, deployment=False)
    }
    assert per_tenant == {"chat": (11.5, 30.0), "search": (0.5, 1.0)}
    per_deployment = dict(((t, d), m) for t, d, _, m in totals_by(lines, deployment=True))
    assert per_deployment["chat", "llama"] == pytest.approx(27.0)


def test_the_window_clips_intervals() -> None:
    interval = HeldInterval("a1", "chat", "", "H100-80GB", 2, False, hours(0), hours(4))
    # Since 1 h, until 3 h: 2 h × 2 GPUs = 4 GPU-h = $12.
    (line,) = cost_lines([interval], PRICES, hours(1), hours(3))
    assert line.gpu_hours == pytest.approx(4.0) and line.money == pytest.approx(12.0)
    assert cost_lines([interval], PRICES, hours(5), hours(6)) == []


def test_binding_gpu_equivalents() -> None:
    assert binding_gpus("whole", {}) == 1.0
    assert binding_gpus("fraction", {"milli_gpu": 250}) == 0.25
    assert binding_gpus("mig", {"mig_profile": "3g.40gb"}) == pytest.approx(3 / 7)


def test_the_shipped_price_table_covers_the_catalogue() -> None:
    table = load_prices()
    assert set(table.gpus) == set(CATALOGUE)
    for price in table.gpus.values():
        assert 0 < price.spot_per_hour <= price.on_demand_per_hour


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "gpus: {X100: {on_demand_per_hour: 1, spot_per_hour: 1}}",
            "not catalogue GPU models: X100",
        ),
        ("gpus: {L4: {on_demand_per_hour: 1, spot_per_hour: 2}}", "spot_per_hour must not exceed"),
        ("gpus: {L4: {on_demand_per_hour: -1, spot_per_hour: 0}}", "gpus.L4.on_demand_per_hour"),
        ("gpus: [1", "not YAML"),
    ],
)
def test_bad_price_tables_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_prices(text)


def test_a_gpu_model_without_a_price_is_not_found() -> None:
    with pytest.raises(NotFound, match="no price for GPU model 'L4'"):
        PRICES.per_hour("L4")
