"""Tenant quota rows and tenant usage. Functions take a Connection."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Table, func, select
from sqlalchemy.dialects.postgresql import insert

from scheduler.domain.errors import InvalidArgument
from scheduler.domain.quotas import TenantQuota, usage_by_tenant
from scheduler.store.models import AllocationRow, GpuClaimRow, GpuRow, TenantRow

tenants_t = cast(Table, TenantRow.__table__)
allocations_t = cast(Table, AllocationRow.__table__)
claims_t = cast(Table, GpuClaimRow.__table__)
gpus_t = cast(Table, GpuRow.__table__)


def load_quotas(conn: Connection) -> dict[str, TenantQuota]:
    rows = conn.execute(select(tenants_t.c.name, tenants_t.c.quota_units, tenants_t.c.weight))
    return {name: TenantQuota(name, quota, weight) for name, quota, weight in rows}


def load_usage(conn: Connection) -> dict[str, float]:
    """Normalised GPU units each tenant holds now.

    Driven from the live claims, each finding its allocation by primary key:
    the cost follows the claims held now, never the released history (a join
    would let the planner hash the whole allocations table)."""
    tenant = (
        select(allocations_t.c.tenant)
        .where(allocations_t.c.id == claims_t.c.allocation_id)
        .scalar_subquery()
    )
    rows = conn.execute(
        select(tenant, gpus_t.c.model, claims_t.c.milli, claims_t.c.mig_compute).join(
            gpus_t, gpus_t.c.id == claims_t.c.gpu_id
        )
    ).all()
    return usage_by_tenant((t, m, milli, compute) for t, m, milli, compute in rows)


def set_quota(
    conn: Connection, name: str, quota_units: float, weight: float, now: datetime
) -> None:
    if not name or len(name) > 128:
        raise InvalidArgument("tenant name must be 1..128 characters")
    if quota_units < 0:
        raise InvalidArgument(f"quota_units must be 0 or more, got {quota_units}")
    if weight <= 0:
        raise InvalidArgument(f"weight must be more than 0, got {weight}")
    values = {"name": name, "quota_units": quota_units, "weight": weight, "updated_at": now}
    statement = insert(tenants_t).values(values)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[tenants_t.c.name],
            set_={k: statement.excluded[k] for k in ("quota_units", "weight", "updated_at")},
        )
    )


def pending_by_tenant(conn: Connection) -> dict[str, int]:
    rows = conn.execute(
        select(allocations_t.c.tenant, func.count())
        .where(allocations_t.c.state == "pending")
        .group_by(allocations_t.c.tenant)
    ).all()
    return {tenant: int(count) for tenant, count in rows}
