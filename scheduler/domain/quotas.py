"""Tenant quotas and fair share, as pure functions.

A tenant's usage is in normalised GPU units (catalogue throughput weights),
so a guarantee means the same serving capacity whatever generation it lands
on. Under its quota a tenant is entitled; above it, it borrows idle capacity,
which is shared between borrowers by weight and reclaimed (by checkpoint-
coordinated preemption) when an entitled tenant needs it.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from scheduler.domain.catalogue import CATALOGUE, MIG_COMPUTE_SLICES
from scheduler.domain.errors import InvalidArgument

T = TypeVar("T")


@dataclass(frozen=True)
class TenantQuota:
    name: str
    quota_units: float = 0.0
    weight: float = 1.0


# A million A100-80GB equivalents: far beyond any fleet, and finite.
MAX_QUOTA_UNITS = 1_000_000.0
MAX_WEIGHT = 1_000_000.0


def validate_quota(quota_units: float, weight: float) -> None:
    """InvalidArgument unless 0 <= quota_units <= MAX_QUOTA_UNITS and
    0 < weight <= MAX_WEIGHT. NaN and infinities fail explicitly: PostgreSQL
    orders NaN above every number, so `CHECK (quota_units >= 0)` would store it."""
    if not (math.isfinite(quota_units) and 0 <= quota_units <= MAX_QUOTA_UNITS):
        raise InvalidArgument(
            f"quota_units must be a finite number from 0 to {MAX_QUOTA_UNITS:g}, got {quota_units}"
        )
    if not (math.isfinite(weight) and 0 < weight <= MAX_WEIGHT):
        raise InvalidArgument(
            f"weight must be a finite number above 0 and at most {MAX_WEIGHT:g}, got {weight}"
        )


def claim_units(model: str, milli: int, mig_compute: int) -> float:
    """Normalised units of one claim on a GPU of `model`."""
    share = mig_compute / MIG_COMPUTE_SLICES if mig_compute else milli / 1000
    return share * CATALOGUE[model].throughput_weight


def usage_by_tenant(claims: Iterable[tuple[str, str, int, int]]) -> dict[str, float]:
    """(tenant, model, milli, mig_compute) claims -> units per tenant."""
    usage: dict[str, float] = defaultdict(float)
    for tenant, model, milli, mig_compute in claims:
        usage[tenant] += claim_units(model, milli, mig_compute)
    return dict(usage)


def quota_of(quotas: Mapping[str, TenantQuota], tenant: str) -> TenantQuota:
    return quotas.get(tenant) or TenantQuota(tenant)


def is_borrowing(
    quotas: Mapping[str, TenantQuota], usage: Mapping[str, float], tenant: str
) -> bool:
    return usage.get(tenant, 0.0) > quota_of(quotas, tenant).quota_units


def is_entitled(quotas: Mapping[str, TenantQuota], usage: Mapping[str, float], tenant: str) -> bool:
    """Below its guarantee: may reclaim what others borrowed."""
    quota = quota_of(quotas, tenant).quota_units
    return quota > 0 and usage.get(tenant, 0.0) < quota


def share_key(
    quotas: Mapping[str, TenantQuota], usage: Mapping[str, float], tenant: str
) -> tuple[int, float]:
    """Who goes first: entitled tenants (least used share of their quota
    first), then borrowers by borrowed units per weight."""
    quota = quota_of(quotas, tenant)
    used = usage.get(tenant, 0.0)
    if used < quota.quota_units:
        return (0, used / quota.quota_units)
    return (1, (used - quota.quota_units) / quota.weight)


def fair_order(
    items: Sequence[T],
    priority_of: Callable[[T], int],
    tenant_of: Callable[[T], str],
    units_of: Callable[[T], float],
    quotas: Mapping[str, TenantQuota],
    usage: Mapping[str, float],
) -> list[T]:
    """Order `items` (given in arrival order) for a placement pass: priority
    first; within a priority, the tenant with the best share_key next, its
    oldest item first, as if each item taken were placed."""
    projected = dict(usage)
    ordered: list[T] = []
    levels: dict[int, list[T]] = defaultdict(list)
    for item in items:
        levels[priority_of(item)].append(item)
    for priority in sorted(levels, reverse=True):
        queues: dict[str, deque[T]] = defaultdict(deque)
        for item in levels[priority]:
            queues[tenant_of(item)].append(item)
        heap = [(share_key(quotas, projected, t), i, t) for i, t in enumerate(queues)]
        heapq.heapify(heap)
        while heap:
            _, order, tenant = heapq.heappop(heap)
            item = queues[tenant].popleft()
            ordered.append(item)
            projected[tenant] = projected.get(tenant, 0.0) + units_of(item)
            if queues[tenant]:
                heapq.heappush(heap, (share_key(quotas, projected, tenant), order, tenant))
    return ordered
