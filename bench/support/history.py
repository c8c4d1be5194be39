"""Released allocations seeded straight into the scheduler's database, so a
benchmark can measure the allocate path with a long history in the way.

One set-based INSERT … SELECT FROM generate_series per chunk (a progress bar
advances per chunk), then VACUUM ANALYZE, as autovacuum would have left a
long-lived table: the planner has statistics and autovacuum does not wake up
in the middle of the measured window. Rows satisfy the schema: state
'released', the kind's columns filled as the allocator fills them, a unique
(tenant, request_id) ('history-<n>', never a client's), ids 'a-<16 hex>',
real node names in node/nodes/bindings, timestamps over the last 30 days.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import psycopg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from scheduler.store.database import libpq_url

CHUNK_ROWS = 50_000
# Half the history belongs to tenants the churn also uses (bench-0..7 there).
HISTORY_TENANTS = ("bench-0", "bench-1", "bench-2", "bench-3",
                   "archive-0", "archive-1", "archive-2", "archive-3")  # fmt: skip

# kind by g % 10: 4 whole (1, 2, 4 or 8 GPUs), 4 fraction, 2 MIG, like the churn's mix.
SEED_SQL = """
INSERT INTO allocations (
  id, tenant, request_id, request_hash, kind, gpu_count, milli, memory_mib, mig_profile,
  gpu_models, priority_class, priority, workload_class, model, labels, state,
  pending_reasons, unschedulable, bindings, message, node, nodes,
  created_at, updated_at, placed_at, event_count, on_failure)
SELECT
  'a-' || substr(md5('history-' || g), 1, 16),
  (%(tenants)s::text[])[1 + g %% cardinality(%(tenants)s::text[])],
  'history-' || g,
  encode(sha256(convert_to('history-' || g, 'UTF8')), 'hex'),
  CASE WHEN g %% 10 < 4 THEN 'whole' WHEN g %% 10 < 8 THEN 'fraction' ELSE 'mig' END,
  CASE WHEN g %% 10 < 4 THEN (ARRAY[1, 2, 4, 8])[1 + g %% 4] ELSE 0 END,
  CASE WHEN g %% 10 BETWEEN 4 AND 7 THEN 100 + 50 * (g %% 17) ELSE 0 END,
  CASE WHEN g %% 10 BETWEEN 4 AND 7 THEN 1024 * (2 + g %% 39) ELSE 0 END,
  CASE WHEN g %% 10 >= 8 THEN '1g.10gb' ELSE '' END,
  '[]'::jsonb, 'normal', 50, 'unspecified', '', '{}'::jsonb, 'released',
  '[]'::jsonb, false,
  jsonb_build_array(jsonb_build_object(
    'node', n.node, 'gpu_uuid', 'GPU-' || md5(n.node || (g %% 8)), 'gpu_index', g %% 8,
    'gpu_model', n.model, 'milli_gpu', 1000, 'memory_mib', 0, 'mig_profile', '', 'mig_start', 0)),
  'released by token bench', n.node, ARRAY[n.node]::varchar[],
  t.created, t.created + interval '2 hours', t.created + interval '1 second', 3, 'requeue'
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g
CROSS JOIN LATERAL (
  SELECT (%(nodes)s::text[])[i] AS node, (%(models)s::text[])[i] AS model
  FROM (SELECT 1 + (g * 7919) %% cardinality(%(nodes)s::text[]) AS i) AS pick
) AS n
CROSS JOIN LATERAL (
  SELECT now() - interval '31 days' + (g %% 2592000) * interval '1 second' AS created
) AS t
"""


def seed_history(
    database_url: str, rows: int, gpus: Sequence[tuple[str, str]], console: Console
) -> float:
    """Insert `rows` released allocations spread over the nodes of `gpus`
    ((node, GPU model) pairs); returns the seconds it took (VACUUM ANALYZE included)."""
    started = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    params = {
        "tenants": list(HISTORY_TENANTS),
        "nodes": [node for node, _ in gpus],
        "models": [model for _, model in gpus],
    }
    with (
        psycopg.connect(libpq_url(database_url), autocommit=True) as conn,
        Progress(*columns, console=console, transient=True) as bar,
    ):
        task = bar.add_task("seeding released allocations", total=rows)
        for lo in range(0, rows, CHUNK_ROWS):
            hi = min(rows, lo + CHUNK_ROWS) - 1
            conn.execute(SEED_SQL, {**params, "lo": lo, "hi": hi})
            bar.update(task, completed=hi + 1)
        bar.update(task, description="VACUUM ANALYZE allocations")
        conn.execute("VACUUM (ANALYZE) allocations")
    return time.perf_counter() - started
