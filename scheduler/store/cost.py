"""What cost reads: held intervals from the allocation history, spot nodes, and
deployments' replicas with their engines' token counters (migration 0011).

An admin or tenant request, not a hot path: it reads the history of the
allocations it is asked about. Functions take a Connection; the caller owns
the transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, text

from scheduler.serving.cost import HOLDING_STATES, HeldInterval, binding_gpus

# Each event's stretch lasts until the allocation's next event (or now); the
# stretches spent placed, running or preempting are held. Deployment names
# come from deploy's `replicas` rows (one per replica allocation).
_HELD = text(
    """
    WITH ev AS (
        SELECT e.allocation_id, e.state, e.at,
               LEAD(e.at) OVER (PARTITION BY e.allocation_id ORDER BY e.seq) AS next_at
        FROM allocation_events e
        JOIN allocations a ON a.id = e.allocation_id
        LEFT JOIN replicas r ON r.allocation_id = a.id
        LEFT JOIN deployments d ON d.id = r.deployment_id
        WHERE (CAST(:tenant AS varchar) IS NULL OR a.tenant = :tenant)
          AND (CAST(:deployment_id AS varchar) IS NULL OR d.id = :deployment_id)
    )
    SELECT ev.allocation_id, ev.at AS start, COALESCE(ev.next_at, :until) AS end_at,
           a.tenant, a.kind, a.bindings, COALESCE(d.name, '') AS deployment
    FROM ev
    JOIN allocations a ON a.id = ev.allocation_id
    LEFT JOIN replicas r ON r.allocation_id = a.id
    LEFT JOIN deployments d ON d.id = r.deployment_id
    WHERE ev.state IN :holding
      AND ev.at < :until
      AND (CAST(:since AS timestamptz) IS NULL OR COALESCE(ev.next_at, :until) > :since)
    ORDER BY ev.allocation_id, ev.at
    """
).bindparams(bindparam("holding", expanding=True))

_SPOT_NODES = text("SELECT name FROM nodes WHERE labels ->> 'spot' = 'true'")

_DEPLOYMENT = text(
    """
    SELECT id, tenant, name FROM deployments
    WHERE tenant = :tenant AND name = :name
    ORDER BY (state <> 'deleted') DESC, created_at DESC
    LIMIT 1
    """
)

# Per deployment: the replicas that held GPUs inside the window, and their
# engines' latest token counters (totals since each replica started).
_TOKENS = text(
    """
    SELECT d.id AS deployment_id, d.tenant, d.name, r.allocation_id,
           COALESCE(m.prompt_tokens_total, 0) AS prompt_tokens,
           COALESCE(m.generation_tokens_total, 0) AS generation_tokens
    FROM replicas r
    JOIN deployments d ON d.id = r.deployment_id
    LEFT JOIN replica_metrics m ON m.replica_id = r.id
    WHERE (CAST(:tenant AS varchar) IS NULL OR d.tenant = :tenant)
      AND (CAST(:deployment_id AS varchar) IS NULL OR d.id = :deployment_id)
      AND r.created_at < :until
      AND (CAST(:since AS timestamptz) IS NULL OR r.stopped_at IS NULL OR r.stopped_at > :since)
    ORDER BY d.tenant, d.name, r.allocation_id
    """
)


@dataclass(frozen=True)
class DeploymentRef:
    id: str
    tenant: str
    name: str


@dataclass(frozen=True)
class ReplicaTokens:
    deployment_id: str
    tenant: str
    deployment: str
    allocation_id: str
    prompt_tokens: int
    generation_tokens: int


def find_deployment(conn: Connection, tenant: str, name: str) -> DeploymentRef | None:
    """The live deployment of that name (else the latest deleted one), or None."""
    row = conn.execute(_DEPLOYMENT, {"tenant": tenant, "name": name}).first()
    return DeploymentRef(row.id, row.tenant, row.name) if row else None


def spot_nodes(conn: Connection) -> frozenset[str]:
    return frozenset(name for (name,) in conn.execute(_SPOT_NODES))


def held_intervals(
    conn: Connection,
    *,
    tenant: str | None,
    deployment_id: str | None,
    since: datetime | None,
    until: datetime,
) -> list[HeldInterval]:
    """Every stretch an allocation held GPUs that overlaps [since, until], one
    interval per (GPU model, spot) of its bindings. The bindings are the
    allocation's last placement (what the row keeps after release)."""
    spot = spot_nodes(conn)
    params: dict[str, Any] = {
        "tenant": tenant,
        "deployment_id": deployment_id,
        "since": since,
        "until": until,
        "holding": tuple(sorted(HOLDING_STATES)),
    }
    rows = conn.execute(_HELD, params)
    intervals: list[HeldInterval] = []
    for row in rows:
        for (model, on_spot), gpus in _gpus_by_model(row.kind, row.bindings or [], spot):
            intervals.append(
                HeldInterval(
                    row.allocation_id,
                    row.tenant,
                    row.deployment,
                    model,
                    gpus,
                    on_spot,
                    row.start,
                    row.end_at,
                )
            )
    return intervals


def replica_tokens(
    conn: Connection,
    *,
    tenant: str | None,
    deployment_id: str | None,
    since: datetime | None,
    until: datetime,
) -> list[ReplicaTokens]:
    params = {"tenant": tenant, "deployment_id": deployment_id, "since": since, "until": until}
    return [
        ReplicaTokens(
            r.deployment_id,
            r.tenant,
            r.name,
            r.allocation_id,
            int(r.prompt_tokens),
            int(r.generation_tokens),
        )
        for r in conn.execute(_TOKENS, params)
    ]


def lifetime_intervals(
    conn: Connection, allocation_ids: list[str], until: datetime
) -> list[HeldInterval]:
    """Whole held history of these allocations (for cost per token)."""
    if not allocation_ids:
        return []
    spot = spot_nodes(conn)
    rows = conn.execute(_LIFETIME, {"ids": allocation_ids, "until": until})
    intervals: list[HeldInterval] = []
    for row in rows:
        for (model, on_spot), gpus in _gpus_by_model(row.kind, row.bindings or [], spot):
            intervals.append(
                HeldInterval(
                    row.allocation_id, row.tenant, "", model, gpus, on_spot, row.start, row.end_at
                )
            )
    return intervals


_LIFETIME = text(
    """
    WITH ev AS (
        SELECT e.allocation_id, e.state, e.at,
               LEAD(e.at) OVER (PARTITION BY e.allocation_id ORDER BY e.seq) AS next_at
        FROM allocation_events e
        WHERE e.allocation_id IN :ids
    )
    SELECT ev.allocation_id, ev.at AS start, COALESCE(ev.next_at, :until) AS end_at,
           a.tenant, a.kind, a.bindings
    FROM ev JOIN allocations a ON a.id = ev.allocation_id
    WHERE ev.state IN ('placed', 'running', 'preempting') AND ev.at < :until
    """
).bindparams(bindparam("ids", expanding=True))


def _gpus_by_model(
    kind: str, bindings: list[dict[str, Any]], spot: frozenset[str]
) -> Iterator[tuple[tuple[str, bool], float]]:
    totals: dict[tuple[str, bool], float] = {}
    for binding in bindings:
        key = (str(binding.get("gpu_model", "")), str(binding.get("node", "")) in spot)
        totals[key] = totals.get(key, 0.0) + binding_gpus(kind, binding)
    yield from totals.items()
