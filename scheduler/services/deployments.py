"""Use cases of the Deployments API: create, read, scale, pause, delete,
history, watch replicas; and the engine metrics agents report.

Each takes the Caller: a service acts only on its own tenant's deployments
(and only with priority classes its tenant was granted); viewers and admins
read all. The reconcile loop (scheduler/background/deployments.py) acts on
what these store.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, Engine

from scheduler.domain.auto_layout import ModelCapacity
from scheduler.domain.callers import Caller, require_priority_class, require_tenant, tenant_scope
from scheduler.domain.clock import Clock
from scheduler.domain.deployments import (
    DeploymentSpec,
    require_placeable,
    validate_deployment,
)
from scheduler.domain.errors import FailedPrecondition, InvalidArgument
from scheduler.domain.generations import GenerationPolicy
from scheduler.domain.worker_templates import WorkerTemplate
from scheduler.services.grants import PriorityGrants
from scheduler.store import deployments as store
from scheduler.store.deployments import EngineSample

DEFAULT_HISTORY = 100
# A watcher re-reads the replicas this often (one indexed query over live rows).
WATCH_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class DeploymentView:
    """A deployment row with its live replicas (each with its latest metrics)."""

    row: Mapping[str, Any]
    replicas: Sequence[Mapping[str, Any]]

    @property
    def spec(self) -> DeploymentSpec:
        return DeploymentSpec.from_json(self.row["spec"])


def fleet_capacity(conn: Connection) -> dict[str, ModelCapacity]:
    """Per GPU model: the most GPUs one NVLink domain holds, and all of them
    (what placement.gang.model_capacity computes from a snapshot)."""
    per_domain: dict[tuple[str, str], int] = {}
    for model, node, label in store.gpu_counts(conn):
        key = (model, node if label in ("", "node") else f"nvlink:{label}")
        per_domain[key] = per_domain.get(key, 0) + 1
    capacity: dict[str, ModelCapacity] = {}
    for (model, _), count in per_domain.items():
        known = capacity.get(model, ModelCapacity(0, 0))
        capacity[model] = ModelCapacity(max(known.domain, count), known.total + count)
    return capacity


class DeploymentService:
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        templates: Mapping[str, WorkerTemplate],
        grants: PriorityGrants,
        policy: GenerationPolicy | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self.templates = dict(templates)
        self._grants = grants
        self.policy = policy

    # -- writes -------------------------------------------------------------
    def create(self, caller: Caller, spec: DeploymentSpec) -> DeploymentView:
        scope = tenant_scope(caller)
        if scope is not None:
            spec = replace(spec, tenant=spec.tenant or scope)
            require_tenant(caller, spec.tenant, "the deployment")
        spec = validate_deployment(spec, self.templates)
        if scope is not None:
            require_priority_class(caller, spec.priority_class, self._grants.granted(scope))
        now = self._clock.now()
        with self._engine.begin() as conn:
            require_placeable(spec, fleet_capacity(conn), self.policy)
            row = store.insert_deployment(
                conn,
                {
                    "id": uuid.uuid4().hex,
                    "tenant": spec.tenant,
                    "name": spec.name,
                    "model": spec.model,
                    "spec": spec.as_json(),
                    "min_replicas": spec.min_replicas,
                    "max_replicas": spec.max_replicas,
                    "target_kv": spec.target_kv,
                    "standby_replicas": spec.standby_replicas,
                    "advisory": spec.advisory,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            store.add_event(
                conn,
                row["id"],
                "created",
                f"created by {caller.describe()}: {spec.model} on {spec.engine}, "
                f"{spec.min_replicas}..{spec.max_replicas} replicas, "
                f"target KV {spec.target_kv:.2f}, standby {spec.standby_replicas}"
                + (" (advisory)" if spec.advisory else ""),
                now,
            )
            return self._view(conn, store.find_deployment(conn, spec.name, spec.tenant))

    def scale(
        self,
        caller: Caller,
        name: str,
        tenant: str,
        replicas: int | None,
        min_replicas: int | None,
        max_replicas: int | None,
        autoscale: bool,
    ) -> DeploymentView:
        if replicas is not None and autoscale:
            raise InvalidArgument("replicas and autoscale exclude each other")
        if replicas is None and min_replicas is None and max_replicas is None and not autoscale:
            raise InvalidArgument("give replicas, min_replicas, max_replicas or autoscale")
        now = self._clock.now()
        with self._engine.begin() as conn:
            row = self._find(conn, caller, name, tenant, lock=True)
            _require_active(row)
            spec = DeploymentSpec.from_json(row["spec"])
            low = spec.min_replicas if min_replicas is None else min_replicas
            high = spec.max_replicas if max_replicas is None else max_replicas
            spec = validate_deployment(
                replace(spec, min_replicas=low, max_replicas=high), self.templates
            )
            manual = None if autoscale else row["manual_replicas"]
            if replicas is not None:
                if not 0 <= replicas <= spec.max_replicas or (
                    replicas == 0 and not spec.scale_to_zero
                ):
                    raise InvalidArgument(
                        f"replicas must be {0 if spec.scale_to_zero else 1}.."
                        f"{spec.max_replicas} (max_replicas), got {replicas}"
                    )
                manual = replicas
            changes = []
            if (low, high) != (row["min_replicas"], row["max_replicas"]):
                changes.append(
                    f"bounds {row['min_replicas']}..{row['max_replicas']} → {low}..{high}"
                )
            if manual != row["manual_replicas"]:
                changes.append(
                    "autoscaling" if manual is None else f"fixed at {manual} replicas (manual)"
                )
            store.update_deployment(
                conn,
                row["id"],
                spec=spec.as_json(),
                min_replicas=low,
                max_replicas=high,
                manual_replicas=manual,
                updated_at=now,
            )
            store.add_event(
                conn,
                row["id"],
                "scaled",
                f"{'; '.join(changes) or 'no change'} by {caller.describe()}",
                now,
                row["desired_replicas"],
                manual if manual is not None else row["desired_replicas"],
            )
            return self._view(conn, store.find_deployment(conn, name, row["tenant"]))

    def set_paused(self, caller: Caller, name: str, tenant: str, paused: bool) -> DeploymentView:
        now = self._clock.now()
        with self._engine.begin() as conn:
            row = self._find(conn, caller, name, tenant, lock=True)
            _require_active(row)
            if row["paused"] != paused:
                store.update_deployment(conn, row["id"], paused=paused, updated_at=now)
                kind = "paused" if paused else "resumed"
                store.add_event(conn, row["id"], kind, f"{kind} by {caller.describe()}", now)
            return self._view(conn, store.find_deployment(conn, name, row["tenant"]))

    def delete(self, caller: Caller, name: str, tenant: str) -> DeploymentView:
        """Mark it deleting: the loop drains and releases every replica, then
        marks it deleted. Its events and replica rows stay."""
        now = self._clock.now()
        with self._engine.begin() as conn:
            row = self._find(conn, caller, name, tenant, lock=True)
            if row["state"] == "active":
                store.update_deployment(conn, row["id"], state="deleting", updated_at=now)
                store.add_event(
                    conn,
                    row["id"],
                    "deleting",
                    f"deleted by {caller.describe()}: draining and releasing every replica",
                    now,
                    row["desired_replicas"],
                    0,
                )
            return self._view(conn, store.find_deployment(conn, name, row["tenant"]))

    def record_metrics(self, node: str, samples: Sequence[EngineSample]) -> int:
        """An agent's scrape of the engines on its node (never another node's)."""
        if not samples:
            return 0
        with self._engine.begin() as conn:
            return store.record_samples(conn, node, samples, self._clock.now())

    # -- reads --------------------------------------------------------------
    def get(self, caller: Caller, name: str, tenant: str) -> DeploymentView:
        with self._engine.connect() as conn:
            return self._view(conn, self._find(conn, caller, name, tenant))

    def list_all(self, caller: Caller, tenant: str, include_deleted: bool) -> list[DeploymentView]:
        scope = _read_scope(caller, tenant)
        with self._engine.connect() as conn:
            rows = store.list_deployments(conn, scope, include_deleted)
            replicas = store.replicas_of(conn, [r["id"] for r in rows])
        by_deployment: dict[str, list[Mapping[str, Any]]] = {}
        for replica in replicas:
            by_deployment.setdefault(replica["deployment_id"], []).append(replica)
        return [DeploymentView(r, by_deployment.get(r["id"], [])) for r in rows]

    def history(
        self, caller: Caller, name: str, tenant: str, limit: int
    ) -> list[Mapping[str, Any]]:
        if limit > store.MAX_HISTORY:
            raise InvalidArgument(f"limit may be at most {store.MAX_HISTORY}, got {limit}")
        with self._engine.connect() as conn:
            row = self._find(conn, caller, name, tenant, include_deleted=True)
            return list(store.history(conn, row["id"], limit or DEFAULT_HISTORY))

    def watch_replicas(
        self,
        caller: Caller,
        deployment: str,
        tenant: str,
        is_active: Callable[[], bool],
        poll_s: float = WATCH_POLL_SECONDS,
    ) -> Iterator[Mapping[str, Any] | None]:
        """Every live replica, then None (the snapshot is complete), then each
        replica whose state, endpoint or metrics changed (a stopped or
        vanished one once, as stopped)."""
        scope = _read_scope(caller, tenant)
        if deployment:
            with self._engine.connect() as conn:
                self._find(conn, caller, deployment, tenant)
        seen: dict[str, tuple[Any, ...]] = {}
        last: dict[str, Mapping[str, Any]] = {}
        first = True
        while is_active():
            with self._engine.connect() as conn:
                rows = store.live_replicas(conn, scope, deployment)
            current = {r["id"]: r for r in rows}
            for replica_id, row in current.items():
                key = _watch_key(row)
                if seen.get(replica_id) != key:
                    seen[replica_id] = key
                    last[replica_id] = row
                    yield row
            for gone in sorted(set(seen) - set(current)):
                del seen[gone]
                yield {**last.pop(gone), "state": "stopped"}
            if first:
                first = False
                yield None
            time.sleep(poll_s)

    # -- helpers ------------------------------------------------------------
    def _find(
        self,
        conn: Connection,
        caller: Caller,
        name: str,
        tenant: str,
        lock: bool = False,
        include_deleted: bool = False,
    ) -> dict[str, Any]:
        if not name:
            raise InvalidArgument("name is required")
        scope = tenant_scope(caller)
        if scope is not None:
            require_tenant(caller, tenant or scope, f"deployment {name!r}")
            tenant = scope
        return store.find_deployment(conn, name, tenant or None, lock, include_deleted)

    def _view(self, conn: Connection, row: Mapping[str, Any]) -> DeploymentView:
        return DeploymentView(row, store.replicas_of(conn, [row["id"]]))


def _read_scope(caller: Caller, tenant: str) -> str | None:
    scope = tenant_scope(caller)
    if scope is not None:
        require_tenant(caller, tenant or scope, "the listed tenant")
        return scope
    return tenant or None


def _require_active(row: Mapping[str, Any]) -> None:
    if row["state"] != "active":
        raise FailedPrecondition(f"deployment {row['name']!r} is {row['state']}")


def _watch_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        row["state"],
        row["endpoint"],
        row["node"],
        row["observed_at"],
        row["reason"],
    )
