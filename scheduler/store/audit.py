"""Audit rows: written in batches, read by admins. Functions take a Connection."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, insert, select

from scheduler.store.models import AuditEventRow

audit_t = cast(Table, AuditEventRow.__table__)


def insert_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(audit_t), list(rows))


def list_events(
    conn: Connection,
    since: datetime | None,
    actor: str,
    tenant: str,
    node: str,
    limit: int,
) -> list[dict[str, Any]]:
    query = select(audit_t).order_by(audit_t.c.at.desc(), audit_t.c.id.desc()).limit(limit)
    if since is not None:
        query = query.where(audit_t.c.at >= since)
    if actor:
        query = query.where(audit_t.c.actor.contains(actor, autoescape=True))
    if tenant:
        query = query.where(audit_t.c.tenant == tenant)
    if node:
        query = query.where((audit_t.c.node == node) | (audit_t.c.target == node))
    return [dict(r) for r in conn.execute(query).mappings()]
