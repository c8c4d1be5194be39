"""The deployments' reconcile loop (leader only): replicas follow their
allocations, the autoscaler decides, and the loop acts.

Per tick and deployment:

1. **Observe.** Each live replica follows its allocation: placed/running
   with every engine rank ready (the template's readiness probe: the
   engine's /health) → ready (standby when it was started for the pool);
   requeued, or an engine restarting → starting; preempting (a spot
   interruption notice, a preemption) → draining, so the autoscaler starts
   the replacement while it still finishes its requests; requeued while
   draining → stopped;
   released or failed without being stopped by us → stopped (the
   autoscaler then sees too few replicas and starts a replacement).
2. **Decide.** `scheduler.autoscaling.decide()` over the replicas and their
   latest engine metrics, with the History kept on the deployment row.
   Every decision that changes something is an event with its reason
   (`gpupool deploy history`); advisory deployments record only.
3. **Act** (not paused, not advisory): promote / drain / to-standby are
   state changes the gateway sees on WatchReplicas; stop releases the
   allocation; a start asks the allocator (as the gRPC Allocate path does)
   for each candidate (variant × GPU model) with no_wait, then waits on the
   first one, with the deployment's priority class (it may preempt lower
   classes) and model (warm placement).

A deleting deployment drains every replica, releases it once its
in-flight requests are done (or the drain timed out) and is then deleted.

Database reads and writes happen in short transactions; the allocator
calls (their own transactions) happen between them, never inside one.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from scheduler.autoscaling import Decision, History, ReplicaState, ReplicaView, decide
from scheduler.background.leader import LeaderLease
from scheduler.domain.callers import SYSTEM
from scheduler.domain.clock import Clock
from scheduler.domain.deployments import (
    Candidate,
    DeploymentSpec,
    autoscaling_spec,
    candidates,
    cold_start_s,
    load_tier,
    replica_allocation,
    spread_tiers,
)
from scheduler.domain.errors import GpupoolError
from scheduler.domain.llm_catalogue import canonical_model_name
from scheduler.services.allocations import AllocationService
from scheduler.services.deployments import DeploymentService, fleet_capacity
from scheduler.store import deployments as store
from scheduler.store.residency import list_residency
from scheduler.store.workers import node_address

log = logging.getLogger(__name__)

DEFAULT_ENGINE_PORTS = range(18000, 19000)
# A draining replica's in-flight count is trusted only from a scrape taken
# this long after the drain began (a request routed just before the drain
# shows up in the next scrape).
DRAIN_SETTLE_S = 2.0
DRAIN_TIMEOUT_S = 120.0
# A stopped replica's port is not handed out again for this long: its engine
# gets the template's stop_timeout_s to exit.
PORT_REUSE_S = 120.0


@dataclass
class TickResult:
    """What one tick did per deployment name (for tests and logs)."""

    decisions: dict[str, Decision] = field(default_factory=dict)
    started: dict[str, list[str]] = field(default_factory=dict)
    stopped: dict[str, list[str]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class _Plan:
    """The writes of one deployment's tick, applied in one transaction."""

    replica_updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[tuple[str, str, int, int]] = field(default_factory=list)
    deployment: dict[str, Any] = field(default_factory=dict)
    release: list[tuple[str, str]] = field(default_factory=list)  # (replica id, allocation id)

    def note(self, message: str) -> None:
        """A replica's change, for the deployment's history."""
        self.events.append(("replica", message, 0, 0))

    def move(self, replica: Mapping[str, Any], state: str, now: datetime, reason: str) -> None:
        values = self.replica_updates.setdefault(replica["id"], {})
        values.update(state=state, state_changed_at=now, reason=reason)
        if state == "draining":
            values["draining_at"] = now
        if state == "stopped":
            values["stopped_at"] = now
        if state == "ready":
            values["for_standby"] = False  # serving now: a restart brings it back ready


class DeploymentLoop:
    def __init__(
        self,
        engine: Engine,
        deployments: DeploymentService,
        allocations: AllocationService,
        leader: LeaderLease,
        clock: Clock,
        ports: range = DEFAULT_ENGINE_PORTS,
    ) -> None:
        self._engine = engine
        self._deployments = deployments
        self._allocations = allocations
        self._leader = leader
        self._clock = clock
        self._ports = ports
        self._last_error: dict[str, str] = {}
        self._last_decision: dict[str, tuple[Any, ...]] = {}

    def run_once(self) -> TickResult:
        result = TickResult()
        if not self._leader.is_leader:
            return result
        with self._engine.connect() as conn:
            rows = store.list_deployments(conn, None)
            replicas = store.replicas_of(conn, [r["id"] for r in rows])
            allocations = store.allocations_of(conn, [r["allocation_id"] for r in replicas])
            addresses = {
                a["node"]: node_address(conn, a["node"]) for a in allocations.values() if a["node"]
            }
        by_deployment: dict[str, list[Mapping[str, Any]]] = {}
        for replica in replicas:
            by_deployment.setdefault(replica["deployment_id"], []).append(replica)
        for row in rows:
            try:
                self._reconcile(
                    row, by_deployment.get(row["id"], []), allocations, addresses, result
                )
            except GpupoolError as exc:
                result.errors[row["name"]] = str(exc)
                log.warning("deployment %s: %s", row["name"], exc)
        return result

    # -- one deployment -----------------------------------------------------
    def _reconcile(
        self,
        row: Mapping[str, Any],
        replicas: Sequence[Mapping[str, Any]],
        allocations: Mapping[str, Mapping[str, Any]],
        addresses: Mapping[str, str],
        result: TickResult,
    ) -> None:
        now = self._clock.now()
        spec = DeploymentSpec.from_json(row["spec"])
        plan = _Plan()
        current = [
            _observe(r, allocations.get(r["allocation_id"]), addresses, now, plan) for r in replicas
        ]
        live = [r for r in current if r["state"] != "stopped"]
        if row["state"] == "deleting":
            self._delete_step(row, live, now, plan)
            self._apply(row, plan, now)
            result.stopped[row["name"]] = self._release(row, plan)
            return
        # A preempted replica (its allocation is giving its GPUs back) is no
        # capacity to promote: decide() does not see it, and replaces it.
        decidable = [r for r in live if r["allocation_state"] != "preempting"]
        decision = decide(
            autoscaling_spec(spec, row["manual_replicas"]),
            [_view(r, now) for r in decidable],
            History.from_json(row["autoscaler_history"]),
            now,
        )
        result.decisions[row["name"]] = decision
        acting = not row["paused"] and not spec.advisory
        plan.deployment.update(
            autoscaler_history=decision.history.to_json(),
            desired_replicas=decision.desired_replicas,
            last_decision=decision.reason,
        )
        if decision.changed or decision.desired_replicas != decision.current_replicas:
            kind = "decision" if acting else ("paused" if row["paused"] else "advisory")
            counts = (decision.current_replicas, decision.desired_replicas)
            # Advice (nothing acts on it), or a decision whose last attempt
            # changed nothing (a full fleet), repeats every tick: it is
            # recorded once until the counts or the replicas change.
            key = (kind, *counts, tuple(sorted((r["id"], r["state"]) for r in live)))
            if self._last_decision.get(row["id"]) != key:
                plan.events.append((kind, decision.reason, *counts))
            self._last_decision[row["id"]] = key
        if acting:
            by_id = {r["id"]: r for r in decidable}
            for replica_id in decision.promote:
                plan.move(by_id[replica_id], "ready", now, "promoted")
            for replica_id in decision.drain:
                plan.move(by_id[replica_id], "draining", now, "scale-down: draining")
            for replica_id in decision.to_standby:
                plan.move(by_id[replica_id], "standby", now, "drained: kept warm as standby")
            for replica_id in decision.stop:
                plan.move(by_id[replica_id], "stopped", now, "scale-down: stopped")
                plan.release.append((replica_id, by_id[replica_id]["allocation_id"]))
        self._apply(row, plan, now)
        result.stopped[row["name"]] = self._release(row, plan)
        if acting and (decision.start_serving or decision.start_standby):
            starts = [False] * decision.start_serving + [True] * decision.start_standby
            nodes = {r["node"] for r in live if r["node"]}
            result.started[row["name"]] = self._start(row, spec, starts, nodes)

    def _delete_step(
        self, row: Mapping[str, Any], live: Sequence[Mapping[str, Any]], now: datetime, plan: _Plan
    ) -> None:
        """Drain what serves, stop what does not, release what drained."""
        stopped = 0
        for replica in live:
            state = replica["state"]
            if state in ("ready", "standby"):
                plan.move(replica, "draining", now, "deployment deleted: draining")
                continue
            if state == "draining":
                view = _view(replica, now)
                busy = view.num_requests_running + view.num_requests_waiting > 0
                if busy and now - view.since < timedelta(seconds=DRAIN_TIMEOUT_S):
                    continue
            plan.move(replica, "stopped", now, "deployment deleted")
            plan.release.append((replica["id"], replica["allocation_id"]))
            stopped += 1
        if stopped == len(live):
            plan.deployment.update(state="deleted", deleted_at=now, desired_replicas=0)
            plan.events.append(("deleted", "every replica released; deployment deleted", 0, 0))

    def _apply(self, row: Mapping[str, Any], plan: _Plan, now: datetime) -> None:
        with self._engine.begin() as conn:
            for replica_id, values in plan.replica_updates.items():
                store.update_replica(conn, replica_id, **values)
            for kind, message, before, after in plan.events:
                store.add_event(conn, row["id"], kind, message, now, before, after)
            if plan.deployment:
                store.update_deployment(conn, row["id"], updated_at=now, **plan.deployment)

    def _release(self, row: Mapping[str, Any], plan: _Plan) -> list[str]:
        released = []
        for replica_id, allocation_id in plan.release:
            try:
                self._allocations.release(SYSTEM, allocation_id)
                released.append(replica_id)
            except GpupoolError as exc:  # already gone: nothing holds GPUs
                log.info("deployment %s: release of %s: %s", row["name"], allocation_id, exc)
        return released

    def _start(
        self,
        row: Mapping[str, Any],
        spec: DeploymentSpec,
        for_standby: Sequence[bool],
        used_nodes: set[str],
    ) -> list[str]:
        template = self._deployments.templates[spec.engine]
        with self._engine.connect() as conn:
            found, reasons = candidates(spec, fleet_capacity(conn), self._deployments.policy)
            taken = store.taken_ports(conn, self._clock.now() - timedelta(seconds=PORT_REUSE_S))
            labels = store.node_labels(conn)
        if not found:
            self._event(row, "error", "cannot start a replica: " + "; ".join(reasons))
            return []
        started = []
        for standby in for_standby:
            port = next((p for p in self._ports if p not in taken), None)
            if port is None:
                self._event(row, "error", "no free engine port for a new replica")
                break
            taken.add(port)
            replica_id = uuid.uuid4().hex[:16]
            spread = spread_tiers(used_nodes, labels)
            placed = self._allocate(spec, template, found, replica_id, port, spread)
            if placed is None:
                break
            candidate, record = placed
            if record.node:
                used_nodes.add(record.node)
            now = self._clock.now()
            with self._engine.begin() as conn:
                values = _replica_row(row, spec, candidate, record, replica_id, port, standby, now)
                if record.node:
                    values["node"] = record.node
                    values["endpoint"] = f"{node_address(conn, record.node)}:{port}"
                    resident = [
                        (r.node, r.tier, r.gpu_uuid)
                        for r in list_residency(conn, canonical_model_name(spec.model))
                    ]
                    gpus = {b["gpu_uuid"] for b in record.bindings}
                    tier = load_tier(resident, record.node, gpus)
                    values["expected_cold_start_s"] = cold_start_s(spec, candidate, tier)
                store.insert_replica(conn, values)
                waiting = record.state == "pending"
                store.add_event(
                    conn,
                    row["id"],
                    "replica",
                    f"replica {replica_id} starting ({candidate.variant.name} on "
                    f"{candidate.tp}× {candidate.gpu_model}"
                    f"{', for standby' if standby else ''}"
                    f"{', waiting for GPUs' if waiting else ''})",
                    now,
                )
            started.append(replica_id)
        return started

    def _allocate(
        self,
        spec: DeploymentSpec,
        template: Any,
        found: Sequence[Candidate],
        replica_id: str,
        port: int,
        spread: tuple[frozenset[str], ...],
    ) -> tuple[Candidate, Any] | None:
        """The first candidate that fits now (away from its siblings' failure
        domains where it can); else wait on the first one."""
        for candidate in found:
            request = replica_allocation(
                spec, template, candidate, replica_id, port, no_wait=True, spread_away=spread
            )
            try:
                return candidate, self._allocations.allocate(SYSTEM, request)
            except GpupoolError:
                continue
        request = replica_allocation(spec, template, found[0], replica_id, port, no_wait=False)
        try:
            return found[0], self._allocations.allocate(SYSTEM, request)
        except GpupoolError as exc:
            log.warning("deployment %s: cannot start a replica: %s", spec.name, exc)
            return None

    def _event(self, row: Mapping[str, Any], kind: str, message: str) -> None:
        """An event, unless it repeats this deployment's last error (said once)."""
        if self._last_error.get(row["id"]) == message:
            return
        self._last_error[row["id"]] = message
        with self._engine.begin() as conn:
            store.add_event(conn, row["id"], kind, message, self._clock.now())


def _replica_row(
    row: Mapping[str, Any],
    spec: DeploymentSpec,
    candidate: Candidate,
    record: Any,
    replica_id: str,
    port: int,
    standby: bool,
    now: datetime,
) -> dict[str, Any]:
    return {
        "id": replica_id,
        "deployment_id": row["id"],
        "tenant": row["tenant"],
        "allocation_id": record.id,
        "state": "starting",
        "variant": candidate.variant.name,
        "gpu_model": candidate.gpu_model,
        "gpu_count": candidate.tp,
        "port": port,
        "for_standby": standby,
        "reason": "waiting for GPUs" if record.state == "pending" else "loading the model",
        "expected_cold_start_s": cold_start_s(spec, candidate),
        "created_at": now,
        "state_changed_at": now,
    }


def _observe(
    replica: Mapping[str, Any],
    allocation: Mapping[str, Any] | None,
    addresses: Mapping[str, str],
    now: datetime,
    plan: _Plan,
) -> dict[str, Any]:
    """The replica as its allocation says it is now (changes go into plan)."""
    current = dict(replica)
    state = replica["state"]
    alloc_state = allocation["state"] if allocation else "released"
    current["allocation_state"] = alloc_state
    name = replica["id"]
    if alloc_state in ("released", "failed"):
        reason = (allocation or {}).get("message") or "allocation gone"
        plan.move(replica, "stopped", now, f"lost: allocation {alloc_state} ({reason})")
        plan.note(f"replica {name} lost: allocation {alloc_state} ({reason})")
        current["state"] = "stopped"
        return current
    assert allocation is not None
    node = allocation["node"] or ""
    bindings = allocation["bindings"] or []
    if alloc_state in ("placed", "running", "preempting") and node:
        endpoint = f"{addresses.get(node, node)}:{replica['port']}"
        located = {"node": node, "endpoint": endpoint, "gpu_count": len(bindings)}
        if bindings:
            located["gpu_model"] = bindings[0].get("gpu_model", replica["gpu_model"])
        if any(replica[k] != v for k, v in located.items()):
            plan.replica_updates.setdefault(replica["id"], {}).update(located)
            current.update(located)
    workers = allocation["workers"] or []
    engine_ready = (
        alloc_state == "running"
        and bool(workers)
        and all(w.get("state") == "ready" for w in workers)
    )
    if alloc_state == "preempting" and state in ("ready", "standby", "starting"):
        # A spot notice or a preemption: no new requests from now, and the
        # autoscaler, one replica short, starts (or promotes) its replacement.
        why = f"preempted: {allocation['message'] or 'draining'}"
        _set(plan, current, "draining", now, why)
        plan.note(f"replica {name} draining ({why})")
    elif alloc_state == "pending" and state == "draining":
        # Its GPUs went back while it drained: the replacement already runs.
        _set(plan, current, "stopped", now, "requeued while draining: released")
        plan.release.append((replica["id"], replica["allocation_id"]))
        plan.note(f"replica {name} released: requeued while draining")
    elif state == "starting" and engine_ready:
        target = "standby" if replica["for_standby"] else "ready"
        _set(plan, current, target, now, "engine healthy")
        if replica["ready_at"] is None:
            plan.replica_updates[replica["id"]]["ready_at"] = now
            current["ready_at"] = now
            took = (now - replica["created_at"]).total_seconds()
            plan.note(
                f"replica {name} {target} on {node} after {took:.1f} s "
                f"(expected cold start {replica['expected_cold_start_s']:.1f} s)"
            )
        else:
            plan.note(f"replica {name} {target} again on {node}")
    elif state in ("ready", "standby") and not engine_ready:
        why = "requeued: waiting for GPUs" if alloc_state == "pending" else "engine restarting"
        _set(plan, current, "starting", now, why)
        plan.note(f"replica {name} not serving: {why}")
    return current


def _set(plan: _Plan, current: dict[str, Any], state: str, now: datetime, reason: str) -> None:
    plan.move(current, state, now, reason)
    current.update(state=state, state_changed_at=now, reason=reason)
    if state == "draining":
        current["draining_at"] = now


def _view(replica: Mapping[str, Any], now: datetime) -> ReplicaView:
    observed = replica.get("observed_at")
    running = int(replica.get("num_requests_running") or 0)
    waiting = int(replica.get("num_requests_waiting") or 0)
    usage = replica.get("kv_cache_usage") if observed is not None else None
    draining_at = replica.get("draining_at")
    if replica["state"] == "draining" and draining_at is not None:
        settled = observed is not None and observed >= draining_at + timedelta(
            seconds=DRAIN_SETTLE_S
        )
        if not settled:
            running = max(running, 1)  # not known to be idle yet
    return ReplicaView(
        id=replica["id"],
        state=ReplicaState(replica["state"]),
        since=replica["state_changed_at"],
        kv_cache_usage=None if usage is None else float(usage),
        num_requests_running=running,
        num_requests_waiting=waiting,
        for_standby=bool(replica["for_standby"]),
    )
