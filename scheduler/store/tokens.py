"""API token rows. Functions take a Connection; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, insert, select, update

from scheduler.store.models import ApiTokenRow

tokens_t = cast(Table, ApiTokenRow.__table__)


def insert_token(conn: Connection, row: Mapping[str, Any]) -> None:
    conn.execute(insert(tokens_t).values(dict(row)))


def get_token(conn: Connection, token_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(tokens_t).where(tokens_t.c.id == token_id)).mappings().first()
    return dict(row) if row is not None else None


def list_tokens(conn: Connection, tenant: str, include_revoked: bool) -> list[dict[str, Any]]:
    query = select(tokens_t).order_by(tokens_t.c.created_at, tokens_t.c.id)
    if tenant:
        query = query.where(tokens_t.c.tenant == tenant)
    if not include_revoked:
        query = query.where(tokens_t.c.revoked_at.is_(None))
    return [dict(r) for r in conn.execute(query).mappings()]


def revoke_token(conn: Connection, token_id: str, now: datetime) -> dict[str, Any] | None:
    """Mark revoked (idempotent); None if there is no such token."""
    conn.execute(
        update(tokens_t)
        .where(tokens_t.c.id == token_id, tokens_t.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return get_token(conn, token_id)
