"""Which priority classes a tenant may use (tenants.priority_classes)."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Table, select
from sqlalchemy.dialects.postgresql import insert

from scheduler.store.models import TenantRow

tenants_t = cast(Table, TenantRow.__table__)


def load_grants(conn: Connection, tenants: list[str]) -> dict[str, list[str] | None]:
    """Explicit grants of these tenants; a tenant without a row is left out."""
    rows = conn.execute(
        select(tenants_t.c.name, tenants_t.c.priority_classes).where(tenants_t.c.name.in_(tenants))
    )
    return {name: classes for name, classes in rows}


def save_grant(conn: Connection, tenant: str, classes: list[str] | None, now: datetime) -> None:
    """Set the grant; a tenant without a row gets one with no quota and weight 1."""
    values = {
        "name": tenant,
        "quota_units": 0.0,
        "weight": 1.0,
        "updated_at": now,
        "priority_classes": classes,
    }
    statement = insert(tenants_t).values(values)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[tenants_t.c.name],
            set_={"priority_classes": statement.excluded.priority_classes, "updated_at": now},
        )
    )
