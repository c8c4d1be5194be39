"""Tenants: quotas set by admins, usage derived from live claims."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from scheduler.allocator.allocator import Allocator
from scheduler.domain.clock import Clock
from scheduler.domain.quotas import quota_of, validate_quota
from scheduler.store import tenants as store


@dataclass(frozen=True)
class TenantRecord:
    name: str
    quota_units: float
    weight: float
    used_units: float
    borrowed_units: float
    pending: int


class TenantService:
    def __init__(self, engine: Engine, allocator: Allocator, clock: Clock) -> None:
        self._engine = engine
        self._allocator = allocator
        self._clock = clock

    def set_quota(self, name: str, quota_units: float, weight: float) -> TenantRecord:
        weight = weight or 1.0  # 0 (unset on the wire) means 1
        validate_quota(quota_units, weight)
        with self._engine.begin() as conn:
            store.set_quota(conn, name, quota_units, weight, self._clock.now())
        # A bigger guarantee may let waiting work reclaim borrowed capacity.
        self._allocator.quotas_changed()
        self._allocator.request_pending_pass()
        return next(t for t in self.list() if t.name == name)

    def list(self) -> list[TenantRecord]:
        with self._engine.connect() as conn:
            quotas = store.load_quotas(conn)
            usage = store.load_usage(conn)
            pending = store.pending_by_tenant(conn)
        names = sorted(set(quotas) | set(usage) | set(pending))
        records = []
        for name in names:
            quota = quota_of(quotas, name)
            used = usage.get(name, 0.0)
            records.append(
                TenantRecord(
                    name=name,
                    quota_units=quota.quota_units,
                    weight=quota.weight,
                    used_units=round(used, 3),
                    borrowed_units=round(max(0.0, used - quota.quota_units), 3),
                    pending=pending.get(name, 0),
                )
            )
        return records
