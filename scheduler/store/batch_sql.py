"""The allocator's hot statements, in plain psycopg on its own connection.

Every batch of the allocator runs the same few statements. SQLAlchemy Core
spent more CPU building and binding them than PostgreSQL spent running them,
so here each is fixed text, prepared by psycopg on first use, and takes its
rows as one JSON array that PostgreSQL unpacks with
jsonb_populate_recordset: a set-based write costs one parameter whatever
the batch size. The schema's constraints and triggers judge every row
exactly as they do for any other writer. SQLAlchemy stays for everything
else (rare statements, admin paths).

psycopg's errors are re-raised as SQLAlchemy's DBAPIError family, so the
allocator tells a lost race (IntegrityError), a refused value (DataError)
and a lost database (OperationalError) apart the same way for both layers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import Table
from sqlalchemy.exc import DBAPIError

from scheduler.domain.fleet import Claim
from scheduler.store.allocations import NOTIFY_CHANNEL, TXID_MARK
from scheduler.store.models import AllocationRow

_allocations = cast(Table, AllocationRow.__table__)


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def as_json(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps(rows, default=_json_default, separators=(",", ":"))


def _column_defaults() -> dict[str, Any]:
    """What SQLAlchemy would fill in for a column an insert leaves out: a
    value, or a callable (list, dict) to call per row."""
    defaults: dict[str, Any] = {"nodes": list}  # a server default in the schema
    for column in _allocations.columns:
        default = column.default
        if column.identity is None and default is not None:
            arg = getattr(default, "arg", None)
            defaults[column.name] = _Call(arg) if callable(arg) else arg
    return defaults


class _Call:
    """A per-row default (SQLAlchemy wraps `list` into f(context))."""

    def __init__(self, make: Callable[[Any], Any]) -> None:
        self.make = make


def _filled(row: dict[str, Any]) -> dict[str, Any]:
    full = {c: v.make(None) if isinstance(v, _Call) else v for c, v in _DEFAULTS.items()}
    full.update(row)
    return full


_DEFAULTS = _column_defaults()
# Every column but the arrival sequence, which the identity numbers.
_INSERTED = [c.name for c in _allocations.columns if c.identity is None]
_INSERT_ALLOCATIONS = (
    f"INSERT INTO allocations ({', '.join(_INSERTED)}) "
    f"SELECT {', '.join('r.' + c for c in _INSERTED)} "
    "FROM jsonb_populate_recordset(NULL::allocations, %s::jsonb) WITH ORDINALITY AS r "
    "ORDER BY r.ordinality"
)
_INSERT_CLAIMS = (
    "INSERT INTO gpu_claims (allocation_id, gpu_id, milli, memory_mib, mig_profile, mig_start,"
    " mig_size, mig_compute) SELECT allocation_id, gpu_id, milli, memory_mib, mig_profile,"
    " mig_start, mig_size, mig_compute"
    " FROM jsonb_populate_recordset(NULL::gpu_claims, %s::jsonb)"
)
_INSERT_SLOTS = (
    "INSERT INTO mig_slots (gpu_id, slot, mig_enabled, allocation_id)"
    " SELECT gpu_id, slot, mig_enabled, allocation_id"
    " FROM jsonb_populate_recordset(NULL::mig_slots, %s::jsonb)"
)
_INSERT_EVENTS = (
    "INSERT INTO allocation_events (allocation_id, seq, state, reason, message, deadline, at)"
    " SELECT allocation_id, seq, state, reason, message, deadline, at"
    " FROM jsonb_populate_recordset(NULL::allocation_events, %s::jsonb)"
)
_DELETE_CLAIMS = "DELETE FROM gpu_claims WHERE allocation_id = ANY(%s::text[])"
# The first TXID_MARK in a payload becomes this transaction's id (allocator/capacity.py).
_NOTIFY = (
    "SELECT pg_notify(%s, regexp_replace(p, %s, pg_current_xact_id()::text))"
    " FROM unnest(%s::text[]) AS p"
)
# Columns named, not `*`: a prepared `SELECT *` fails ("cached plan must not
# change result type") once a rolling upgrade's migration adds a column.
_COLUMNS = ", ".join(f"a.{c.name}" for c in _allocations.columns)
# Locked in id order (a fixed order, so two batches never deadlock).
_LOCK = (
    f"SELECT {_COLUMNS} FROM allocations a WHERE a.id = ANY(%s::text[]) ORDER BY a.id FOR UPDATE"
)
# Retries are answered from the stored row; no lock needed to read it.
_FIND = (
    f"SELECT {_COLUMNS} FROM unnest(%s::text[], %s::text[]) AS k(tenant, request_id)"
    " JOIN allocations a ON a.tenant = k.tenant AND a.request_id = k.request_id"
)
# ix_allocations_tenant_pending: never touches released history.
_PENDING_COUNTS = (
    "SELECT tenant, count(*) FROM allocations"
    " WHERE tenant = ANY(%s::text[]) AND state = 'pending' GROUP BY tenant"
)
_UPDATE_COLUMNS = frozenset(_INSERTED) - {"id"}
# A pass's candidates, in placement order: an ordered walk of ix_allocations_queue
# that stops at the limit. Statistics taken before a burst of requests (or none,
# without autovacuum) make the planner expect a few pending rows and pick a bitmap
# scan that sorts the whole queue on disk instead: 94 ms against 0.4 ms at 20,000
# pending. So bitmap scans and sorts are off for this statement alone.
_PLANNED_FOR_ORDER = ("SET LOCAL enable_bitmapscan = off", "SET LOCAL enable_sort = off")
_PLANNED_AS_USUAL = ("SET LOCAL enable_bitmapscan = on", "SET LOCAL enable_sort = on")
_CANDIDATES = (
    f"SELECT {_COLUMNS} FROM allocations a WHERE a.state = 'pending'"
    " AND (%(unschedulable)s OR NOT a.unschedulable)"
    " AND (%(models)s::text[] IS NULL OR jsonb_array_length(a.gpu_models) = 0"
    " OR a.gpu_models ?| %(models)s::text[])"
    " ORDER BY a.priority DESC, a.queue_seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
)


@contextmanager
def translated(statement: str) -> Iterator[None]:
    """psycopg's errors as SQLAlchemy's (IntegrityError, DataError, …)."""
    try:
        yield
    except psycopg.Error as exc:
        raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc


@lru_cache(maxsize=64)  # a handful of column sets, built once each
def _update_sql(columns: tuple[str, ...]) -> str:
    unknown = set(columns) - _UPDATE_COLUMNS
    if unknown:
        raise ValueError(f"not columns of allocations: {sorted(unknown)}")
    sets = ", ".join(f"{c} = r.{c}" for c in columns)
    # The id list keeps the plan on the primary key whatever the JSON holds.
    return (
        f"UPDATE allocations AS a SET {sets}"
        " FROM jsonb_populate_recordset(NULL::allocations, %s::jsonb) AS r"
        " WHERE a.id = r.id AND a.id = ANY(%s::text[])"
    )


class BatchStatements:
    """One allocator transaction's statements on its psycopg connection, and
    the round trips they cost (counted, for Admin.GetAllocatorStats)."""

    def __init__(self, driver: psycopg.Connection[Any]) -> None:
        self.driver = driver
        self.pipelined = False  # inside the closing pipeline: its sync is the round trip
        self.round_trips = 0
        self._begun = False  # BEGIN has gone out

    def round_trip(self, in_pipeline: bool = False) -> None:
        """One more round trip; psycopg sends BEGIN before the transaction's
        first statement, alone unless a pipeline carries both."""
        self.round_trips += 1 if self._begun or in_pipeline else 2
        self._begun = True

    def _execute(self, query: str, params: Sequence[Any]) -> psycopg.Cursor[Any]:
        with translated(query):
            cursor = self.driver.execute(query, params, prepare=True)
        if not self.pipelined:
            self.round_trip()
        return cursor

    # -- the opening read -------------------------------------------------------

    def open(
        self, release_ids: Sequence[str], keys: Sequence[tuple[str, str]], tenants: Sequence[str]
    ) -> tuple[
        dict[str, dict[str, Any]], dict[tuple[str, str], dict[str, Any]], dict[str, int] | None
    ]:
        """BEGIN, lock the rows to release, find retried requests' rows and
        count the asking tenants' waiting allocations: one round trip."""
        locked: dict[str, dict[str, Any]] = {}
        found: dict[tuple[str, str], dict[str, Any]] = {}
        counts: dict[str, int] | None = None
        if not (release_ids or keys or tenants):
            return locked, found, counts
        with translated(_LOCK), self.driver.pipeline() as pipeline:
            lock = find = count = None
            if release_ids:
                lock = self.driver.cursor(row_factory=dict_row)
                lock.execute(_LOCK, (sorted(set(release_ids)),), prepare=True)
            if keys:
                find = self.driver.cursor(row_factory=dict_row)
                find.execute(_FIND, ([t for t, _ in keys], [r for _, r in keys]), prepare=True)
            if tenants:
                count = self.driver.cursor()
                count.execute(_PENDING_COUNTS, (sorted(set(tenants)),), prepare=True)
            pipeline.sync()
            if lock is not None:
                locked = {r["id"]: r for r in lock.fetchall()}
            if find is not None:
                found = {(r["tenant"], r["request_id"]): r for r in find.fetchall()}
            if count is not None:
                counts = {str(t): int(n) for t, n in count.fetchall()}
        self.round_trip(in_pipeline=True)
        return locked, found, counts

    def pending_candidates(
        self, limit: int, models: Sequence[str] | None, include_unschedulable: bool
    ) -> list[dict[str, Any]]:
        """Pending allocations a pass should try, in placement order: those that
        may use one of `models` (or any model) when given, the unschedulable ones
        only when asked; locked, skipping rows another transaction holds. One
        round trip."""
        params = {
            "unschedulable": include_unschedulable,
            "models": list(models) if models is not None else None,
            "limit": limit,
        }
        with translated(_CANDIDATES), self.driver.pipeline() as pipeline:
            for setting in _PLANNED_FOR_ORDER:
                self.driver.execute(setting)
            cursor = self.driver.cursor(row_factory=dict_row)
            cursor.execute(_CANDIDATES, params, prepare=True)
            for setting in _PLANNED_AS_USUAL:
                self.driver.execute(setting)
            pipeline.sync()
            rows = cursor.fetchall()
        self.round_trip(in_pipeline=True)
        return rows

    def pending_counts(self, tenants: Sequence[str]) -> dict[str, int]:
        cursor = self._execute(_PENDING_COUNTS, (sorted(set(tenants)),))
        return {str(t): int(n) for t, n in cursor.fetchall()}

    # -- writes -----------------------------------------------------------------

    def update_rows(self, updates: Sequence[dict[str, Any]]) -> None:
        """State changes: each dict has `b_id` plus the columns to set; one
        statement per distinct set of columns."""
        groups: dict[tuple[str, ...], dict[str, dict[str, Any]]] = {}
        for update in updates:
            columns = tuple(sorted(k for k in update if k != "b_id"))
            row = {k: v for k, v in update.items() if k != "b_id"}
            row["id"] = update["b_id"]
            groups.setdefault(columns, {})[row["id"]] = row  # the last change of a row wins
        for columns, rows in groups.items():
            self._execute(_update_sql(columns), (as_json(list(rows.values())), list(rows)))

    def insert_allocations(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        self._execute(_INSERT_ALLOCATIONS, (as_json([_filled(r) for r in rows]),))

    def insert_claims(self, allocation_id_by_claim: Sequence[tuple[str, Claim]]) -> None:
        """Live claims (the trigger moves the GPU counters) and MIG slot rows."""
        if not allocation_id_by_claim:
            return
        claims = [
            {
                "allocation_id": allocation_id,
                "gpu_id": c.gpu_id,
                "milli": c.milli,
                "memory_mib": c.memory_mib,
                "mig_profile": c.mig_profile,
                "mig_start": c.mig_start,
                "mig_size": c.mig_size,
                "mig_compute": c.mig_compute,
            }
            for allocation_id, c in allocation_id_by_claim
        ]
        self._execute(_INSERT_CLAIMS, (as_json(claims),))
        slots = [
            {"gpu_id": c.gpu_id, "slot": slot, "mig_enabled": True, "allocation_id": allocation_id}
            for allocation_id, c in allocation_id_by_claim
            if c.mig_profile is not None and c.mig_start is not None
            for slot in range(c.mig_start, c.mig_start + c.mig_size)
        ]
        if slots:
            self._execute(_INSERT_SLOTS, (as_json(slots),))

    def delete_claims_of(self, allocation_ids: Sequence[str]) -> None:
        """Remove these allocations' live claims (the trigger frees the counters)."""
        if allocation_ids:
            self._execute(_DELETE_CLAIMS, (list(allocation_ids),))

    def insert_events(self, events: Sequence[dict[str, Any]]) -> None:
        if events:
            self._execute(_INSERT_EVENTS, (as_json(events),))

    def notify(self, payloads: Sequence[str]) -> None:
        """NOTIFY other replicas; delivered at commit, dropped on rollback."""
        if payloads:
            self._execute(_NOTIFY, (NOTIFY_CHANNEL, TXID_MARK, list(payloads)))
