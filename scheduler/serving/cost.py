"""What GPUs cost: GPU-hours and money from allocation history, and cost per token.

Pure formulas over plain values (the store turns `allocations`,
`allocation_events`, node labels and deploy's `replicas` / `replica_metrics`
rows into them):

- An allocation holds its GPUs while it is placed, running or preempting;
  each such stretch of its event history is a `HeldInterval`. A whole GPU
  counts 1, a fraction milli ÷ 1000, a MIG slice its compute slices ÷ 7.
- GPU-hours = Σ GPUs × hours held inside the window [since, until];
  money = Σ GPU-hours × the GPU model's price per hour (spot when the node
  carries the label spot=true, else on-demand).
- Cost per million tokens = GPUs × price per hour ÷ tokens per hour × 10^6;
  over a stretch of history that is money ÷ tokens × 10^6.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from scheduler.serving.prices import PriceTable

HOLDING_STATES = frozenset({"placed", "running", "preempting"})
_MIG_COMPUTE = re.compile(r"^(\d+)g\.")
MIG_COMPUTE_SLICES = 7


@dataclass(frozen=True)
class HeldInterval:
    """GPUs of one model (on spot nodes or not) held by one allocation from start to end."""

    allocation_id: str
    tenant: str
    deployment: str  # "" when the allocation is no deployment's replica
    gpu_model: str
    gpus: float
    spot: bool
    start: datetime
    end: datetime

    def hours_within(self, since: datetime | None, until: datetime) -> float:
        start = max(self.start, since) if since is not None else self.start
        end = min(self.end, until)
        return max((end - start).total_seconds(), 0.0) / 3600.0


@dataclass(frozen=True)
class CostLine:
    tenant: str
    deployment: str
    gpu_model: str
    spot: bool
    gpu_hours: float
    money: float
    price_per_hour: float


def binding_gpus(kind: str, binding: dict[str, object]) -> float:
    """GPU equivalents one binding holds (see the module docstring)."""
    if kind == "fraction":
        milli = binding.get("milli_gpu", 0)
        return float(milli) / 1000.0 if isinstance(milli, int | float) else 0.0
    if kind == "mig":
        match = _MIG_COMPUTE.match(str(binding.get("mig_profile", "")))
        return int(match.group(1)) / MIG_COMPUTE_SLICES if match else 0.0
    return 1.0


def cost_lines(
    intervals: Iterable[HeldInterval],
    prices: PriceTable,
    since: datetime | None,
    until: datetime,
) -> list[CostLine]:
    """GPU-hours and money per (tenant, deployment, GPU model, spot), sorted."""
    hours: dict[tuple[str, str, str, bool], float] = defaultdict(float)
    for interval in intervals:
        held = interval.hours_within(since, until) * interval.gpus
        if held > 0:
            key = (interval.tenant, interval.deployment, interval.gpu_model, interval.spot)
            hours[key] += held
    lines = []
    for (tenant, deployment, model, spot), gpu_hours in sorted(hours.items()):
        price = prices.per_hour(model, spot)
        lines.append(CostLine(tenant, deployment, model, spot, gpu_hours, gpu_hours * price, price))
    return lines


def totals_by(
    lines: Sequence[CostLine], *, deployment: bool
) -> list[tuple[str, str, float, float]]:
    """(tenant, deployment or "", GPU-hours, money) summed per tenant (or per deployment)."""
    sums: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for line in lines:
        key = (line.tenant, line.deployment if deployment else "")
        sums[key][0] += line.gpu_hours
        sums[key][1] += line.money
    return [(t, d, h, m) for (t, d), (h, m) in sorted(sums.items())]


def cost_per_million_tokens(gpus: float, price_per_hour: float, tokens_per_hour: float) -> float:
    """GPUs × price per hour ÷ tokens per hour × 10^6 (the issue's formula)."""
    if tokens_per_hour <= 0:
        raise ValueError("tokens_per_hour must be positive")
    return gpus * price_per_hour / tokens_per_hour * 1e6


def money_per_million_tokens(money: float, tokens: int) -> float | None:
    """The same over a stretch of history: money ÷ tokens × 10^6; None without tokens."""
    if tokens <= 0:
        return None
    return money / tokens * 1e6
