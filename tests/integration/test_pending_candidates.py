"""The pending pass's candidate query: the right rows in placement order, and
a plan that walks the queue index to its limit even when the statistics
predate a burst of requests (a bitmap scan that sorted the whole queue on
disk took 94 ms at 20,000 pending; the ordered walk 0.4 ms)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from scheduler.store import batch_sql
from scheduler.store.batch_sql import BatchStatements
from scheduler.store.database import libpq_url

PENDING = 20_000  # the size of bench.pending_flood's queue, never analyzed
# Pending rows in three priorities, a third unschedulable, one in four for B200 only.
SEED = """
INSERT INTO allocations (id, tenant, request_id, request_hash, kind, gpu_count, milli,
  memory_mib, mig_profile, gpu_models, priority_class, priority, workload_class, model, labels,
  state, pending_reasons, unschedulable, bindings, message, node, nodes, created_at,
  updated_at, event_count, on_failure)
SELECT 'a-' || lpad(g::text, 16, '0'), 't-' || (g %% 7), 'r-' || g, 'h', 'whole', 8, 0, 0, '',
  CASE WHEN g %% 4 = 0 THEN '["B200"]'::jsonb ELSE '[]'::jsonb END,
  'normal', (ARRAY[10, 50, 90])[1 + g %% 3], 'unspecified', '', '{}'::jsonb,
  'pending', '[]'::jsonb, g %% 3 = 1, '[]'::jsonb, 'waiting', '', ARRAY[]::varchar[],
  now(), now(), 1, 'requeue'
FROM generate_series(1, %s) AS g
"""


@pytest.fixture
def driver(clean_database: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(libpq_url(clean_database)) as conn:
        conn.execute(SEED, (PENDING,))
        conn.commit()
        yield conn


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def test_candidates_come_in_priority_then_arrival_order_with_the_filters(
    driver: psycopg.Connection[Any],
) -> None:
    sql = BatchStatements(driver)
    everything = sql.pending_candidates(200, None, include_unschedulable=True)
    assert len(everything) == 200
    keys = [(-r["priority"], r["queue_seq"]) for r in everything]
    assert keys == sorted(keys)
    assert {r["priority"] for r in everything} == {90}

    schedulable = sql.pending_candidates(PENDING, None, include_unschedulable=False)
    assert not any(r["unschedulable"] for r in schedulable)
    assert len(schedulable) == sum(1 for g in range(1, PENDING + 1) if g % 3 != 1)

    for_h100 = sql.pending_candidates(PENDING, ["H100-80GB"], include_unschedulable=True)
    assert len(for_h100) == PENDING - PENDING // 4
    assert all(r["gpu_models"] == [] for r in for_h100)
    for_b200 = sql.pending_candidates(PENDING, ["B200"], include_unschedulable=True)
    assert len(for_b200) == PENDING  # no model named, or B200
    driver.rollback()


def test_the_rest_of_the_batch_plans_as_usual(driver: psycopg.Connection[Any]) -> None:
    BatchStatements(driver).pending_candidates(10, None, include_unschedulable=True)
    settings = driver.execute(
        "SELECT current_setting('enable_bitmapscan'), current_setting('enable_sort')"
    ).fetchone()
    assert settings == ("on", "on")
    driver.rollback()


def test_candidates_are_an_ordered_index_walk_despite_stale_statistics(
    driver: psycopg.Connection[Any],
) -> None:
    for setting in batch_sql._PLANNED_FOR_ORDER:
        driver.execute(setting)
    params = {"unschedulable": True, "models": None, "limit": 200}
    row = driver.execute("EXPLAIN (FORMAT JSON) " + batch_sql._CANDIDATES, params).fetchone()
    assert row is not None
    document = row[0] if isinstance(row[0], list) else json.loads(row[0])
    nodes = list(_plan_nodes(document[0]["Plan"]))
    kinds = [n["Node Type"] for n in nodes]
    assert "Sort" not in kinds and "Bitmap Heap Scan" not in kinds, kinds
    assert any(n.get("Index Name") == "ix_allocations_queue" for n in nodes), kinds
    driver.rollback()
