"""Workers of allocations, as the scheduler sees them: launch specs checked
against the templates, rendezvous ports, per-rank status from the agents,
and what a gang's status means for its allocation.

- placed → running once every rank reports READY;
- a rank FAILED (its agent used up the restart policy) fails or requeues the
  allocation through the allocator, per its on_failure policy;
- a rank RESTARTING in a gang spanning several nodes bumps the allocation's
  worker_generation, and every node restarts its ranks of that gang (ranks of
  a parallel group cannot live apart; one node's restart alone would leave
  the others blocked in a collective);
- every rank EXITED (status 0) releases the allocation: the work is done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Engine

from scheduler.allocator.allocator import Allocator
from scheduler.allocator.notifier import ChangeNotifier
from scheduler.domain.allocation import AllocationSpec
from scheduler.domain.clock import Clock
from scheduler.domain.worker_templates import WorkerTemplate, validate_worker
from scheduler.services.agents import WorkerReport
from scheduler.store import allocations as allocation_store
from scheduler.store import workers as store

log = logging.getLogger(__name__)

DEFAULT_RENDEZVOUS_PORTS = range(29500, 30000)
MAX_REASON = 1024  # of a worker's exit reason, as kept and shown


class WorkerService:
    def __init__(
        self,
        engine: Engine,
        allocator: Allocator,
        notifier: ChangeNotifier,
        clock: Clock,
        templates: Mapping[str, WorkerTemplate],
        replica_id: str,
        ports: range = DEFAULT_RENDEZVOUS_PORTS,
    ) -> None:
        self._engine = engine
        self._allocator = allocator
        self._notifier = notifier
        self._clock = clock
        self.templates = dict(templates)
        self._replica_id = replica_id
        self._ports = ports
        # Nodes whose agents need a fresh desired state (wired to AgentHub).
        self.nodes_changed: Callable[[set[str]], None] = lambda nodes: None

    def validate(self, spec: AllocationSpec) -> None:
        """INVALID_ARGUMENT at Allocate, never a crash on the node."""
        if spec.worker is None:
            return
        worker = spec.worker
        # The environment too: only the variables the template's env_allow names.
        validate_worker(self.templates, worker.template, worker.args, worker.env)

    def prepare(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Hand out rendezvous ports to live worker allocations that lack one
        (called before a desired state is sent; idempotent)."""
        missing = [r for r in rows if r.get("worker") and not r.get("rendezvous_port")]
        if not missing:
            return rows
        with self._engine.begin() as conn:
            for row in missing:
                got = store.assign_rendezvous(conn, row["id"], row["node"], self._ports)
                if got is None:
                    log.warning("no free rendezvous port on %s for %s", row["node"], row["id"])
                    continue
                row["rendezvous_addr"], row["rendezvous_port"] = got
        return rows

    def report(self, node: str, reports: Sequence[WorkerReport]) -> None:
        """Store per-rank status and act on what it means for each allocation."""
        if not reports:
            return
        by_allocation: dict[str, list[WorkerReport]] = {}
        for report in reports:
            by_allocation.setdefault(report.allocation_id, []).append(report)
        now = self._clock.now()
        changed: list[str] = []
        failed: list[tuple[str, str]] = []
        finished: list[str] = []
        restart_nodes: set[str] = set()
        with self._engine.begin() as conn:
            rows = store.lock_active(conn, list(by_allocation))
            for allocation_id, row in rows.items():
                if row["worker"] is None:
                    continue
                ranks = {b.get("rank", i): b for i, b in enumerate(row["bindings"])}
                statuses = {int(w["rank"]): w for w in row["workers"]}
                counted = {rank: int(w.get("restarts", 0)) for rank, w in statuses.items()}
                # An agent speaks only for its own ranks: what it says of any
                # other rank is neither stored nor acted on.
                mine = [
                    replace(r, node=node, reason=r.reason[:MAX_REASON])
                    for r in by_allocation[allocation_id]
                    if r.rank in ranks and ranks[r.rank]["node"] == node
                ]
                for report in mine:
                    statuses[report.rank] = _status(report, now.isoformat())
                columns: dict[str, Any] = {"workers": [statuses[r] for r in sorted(statuses)]}
                states = [statuses.get(r, {}).get("state") for r in ranks]
                if row["state"] == "placed" and ranks and all(s == "ready" for s in states):
                    store.add_event(conn, row, "running", "RUNNING", ranks_ready(len(ranks)), now)
                    columns.update(state="running", updated_at=now, event_count=row["event_count"])
                    changed.append(allocation_id)
                dead = [r for r in mine if r.state == "failed"]
                if dead:
                    failed.append((allocation_id, _failure(dead[0])))
                elif ranks and all(s == "exited" for s in states):
                    finished.append(allocation_id)
                nodes = {b["node"] for b in row["bindings"]}
                # A new restart (not a repeat of one already counted) of a
                # gang on several nodes: every node restarts its ranks.
                restarting = any(
                    r.state == "restarting" and r.restarts > counted.get(r.rank, 0) for r in mine
                )
                if restarting and len(nodes) > 1 and row["state"] != "preempting":
                    columns["worker_generation"] = row["worker_generation"] + 1
                    restart_nodes |= nodes
                store.save_columns(conn, allocation_id, **columns)
            payloads = [f"alloc:{self._replica_id}:{i}" for i in changed]
            if restart_nodes:  # agents connected to other replicas restart too
                payloads.append(f"nodes:{self._replica_id}:{','.join(sorted(restart_nodes))}")
            allocation_store.notify(conn, payloads)
        self._notifier.publish(changed)
        for allocation_id, reason in failed:
            self._allocator.requeue([allocation_id], reason)
        for allocation_id in finished:
            self._allocator.release(allocation_id, "every worker exited with status 0")
        if restart_nodes:
            log.info("restarting multi-node gangs on %s", sorted(restart_nodes))
            self.nodes_changed(restart_nodes)

    def mig_device(
        self, node: str, allocation_id: str, gpu_uuid: str, mig_start: int, device_uuid: str
    ) -> None:
        """Keep the MIG device id the agent created in the allocation's binding."""
        with self._engine.begin() as conn:
            row = store.lock_active(conn, [allocation_id]).get(allocation_id)
            if row is None:
                return
            bindings = list(row["bindings"])
            for binding in bindings:
                if (binding["node"], binding["gpu_uuid"], binding["mig_start"]) == (
                    node,
                    gpu_uuid,
                    mig_start,
                ):
                    binding["mig_device_uuid"] = device_uuid
            store.save_columns(conn, allocation_id, bindings=bindings)


def _status(report: WorkerReport, at: str) -> dict[str, Any]:
    return {
        "rank": report.rank,
        "node": report.node,
        "state": report.state,
        "pid": report.pid,
        "exit_code": report.exit_code,
        "reason": report.reason,
        "restarts": report.restarts,
        "updated_at": at,
    }


def _failure(report: WorkerReport) -> str:
    detail = report.reason or f"exit code {report.exit_code}"
    return (
        f"worker rank {report.rank} on {report.node} failed after "
        f"{report.restarts} restart(s): {detail}"
    )


def ranks_ready(count: int) -> str:
    """The RUNNING event's message: "its rank is ready", "all 4 ranks ready"."""
    return "its rank is ready" if count == 1 else f"all {count} ranks ready"
