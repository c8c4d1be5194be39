"""Use cases of the fleet: agents registering and heartbeating, admins
cordoning, draining and deleting, and the read side of nodes and GPUs."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from sqlalchemy import Connection, Engine

from scheduler.allocator.allocator import Allocator
from scheduler.domain.clock import Clock
from scheduler.domain.errors import Aborted, FailedPrecondition, InvalidArgument, quoted
from scheduler.domain.node_reports import GpuSpecInput, validate_registration
from scheduler.logs import node_changed
from scheduler.store import allocations as allocation_store
from scheduler.store import fleet as store
from scheduler.store import liveness
from scheduler.store.records import AllocationRecord, GpuRecord, NodeRecord

log = logging.getLogger(__name__)

# An error names at most this many allocations (then "and N more").
NAMED_ALLOCATIONS = 10


class FleetService:
    def __init__(self, engine: Engine, allocator: Allocator, clock: Clock, replica_id: str) -> None:
        self._engine = engine
        self._allocator = allocator
        self._clock = clock
        self._replica_id = replica_id

    def register_node(
        self, name: str, hostname: str, labels: Mapping[str, str], gpus: Sequence[GpuSpecInput]
    ) -> NodeRecord:
        """Create or update the node to match the agent's report (level-triggered).

        A GPU the node no longer reports (replaced at its index by a new UUID,
        or gone) takes its allocations with it: they are requeued through the
        allocator, as an unhealthy GPU's are, and then its row is deleted.
        """
        resolved = validate_registration(name, hostname, labels, gpus)
        self._move_work_off_departed_gpus(name, resolved)
        with self._engine.begin() as conn:
            store.register_node(conn, name, hostname, dict(labels), resolved, self._clock.now())
            allocation_store.notify(conn, [f"fleet:{self._replica_id}:{name}"])
        self.fleet_changed([name])
        return self.get_node(name)

    def _move_work_off_departed_gpus(self, name: str, gpus: Sequence[GpuSpecInput]) -> None:
        """Mark GPUs missing from this report unhealthy and requeue their
        allocations, before the registration deletes their rows (their claims
        would block it)."""
        with self._engine.begin() as conn:
            departed = store.mark_departed_gpus(conn, name, gpus)
            victims = liveness.active_allocations_on_gpus(conn, [g.gpu_id for g in departed])
            if departed:
                allocation_store.notify(conn, [f"fleet:{self._replica_id}:{name}"])
        if not departed:
            return
        # The snapshot must know before the requeue, or the work lands right back.
        self._allocator.refresh_nodes([name])
        reasons = "; ".join(f"GPU {g.index} ({g.uuid}) {g.reason}" for g in departed)
        log.info("%s: %s", name, reasons)
        self._allocator.requeue(victims, f"{name}: {reasons}")

    def set_admin_state(self, name: str, admin_state: str) -> NodeRecord:
        with self._engine.begin() as conn:
            was = store.node_admin_state(conn, name)
            store.set_admin_state(conn, name, admin_state)
            allocation_store.notify(conn, [f"fleet:{self._replica_id}:{name}"])
            moving = (
                liveness.active_allocations_on_node(conn, name) if admin_state == "draining" else []
            )
        if was != admin_state:
            node_changed(name, was, admin_state, "set by an admin")
        self._allocator.refresh_nodes([name])
        if moving:
            self._allocator.requeue([a["id"] for a in moving], f"node {name} is draining")
        self._allocator.place_pending_if_leader()
        return self.get_node(name)

    def interrupt(self, name: str, in_seconds: float) -> tuple[NodeRecord, int]:
        """A spot interruption notice: no new work, and everything on the node
        checkpoints within the notice, then moves elsewhere."""
        if in_seconds <= 0:
            raise InvalidArgument("an interruption notice needs in_seconds > 0")
        with self._engine.begin() as conn:
            was = store.node_admin_state(conn, name)
            store.set_admin_state(conn, name, "cordoned")
            allocation_store.notify(conn, [f"fleet:{self._replica_id}:{name}"])
            running = liveness.active_allocations_on_node(conn, name)
        node_changed(name, was, "cordoned", f"spot interruption in {in_seconds:.0f}s")
        self._allocator.refresh_nodes([name])
        ids = [a["id"] for a in running if a["state"] in ("placed", "running")]
        asked = 0
        if ids:
            reason = f"node {name} is being reclaimed (spot interruption in {in_seconds:.0f}s)"
            asked = self._allocator.preempt(ids, "", in_seconds, reason)
        return self.get_node(name), asked

    def delete_node(
        self, name: str, force: bool, agent_connected: bool = False
    ) -> list[AllocationRecord]:
        """Soft-delete a node whose agent is gone; returns the allocations
        `force` took off it, as they are afterwards.

        FAILED_PRECONDITION while its agent is connected (agent_connected: to
        this replica) or reachable, and while anything is placed, running or
        preempting on it (any rank of a gang) unless force: then they are
        requeued first, through the allocator as failover does, and each one's
        on_failure decides between pending and failed.
        """
        if agent_connected:
            raise FailedPrecondition(_agent_still_there(name, "is connected to this scheduler"))
        with self._engine.begin() as conn:
            live = self._check_deletable(conn, name)
            if live and not force:
                raise FailedPrecondition(
                    f"node {quoted(name)} holds {len(live)} live allocation(s): "
                    f"{_named(live)}; release them or delete with --force to requeue them"
                )
            if not live:
                store.mark_node_deleted(conn, name, self._clock.now())
                allocation_store.notify(conn, [f"fleet:{self._replica_id}:{name}"])
        if live:
            # The node is unreachable, so unschedulable: nothing lands back on it.
            self._allocator.requeue(live, f"node {name} was deleted")
            with self._engine.begin() as conn:
                if left := self._check_deletable(conn, name):
                    raise Aborted(
                        f"node {quoted(name)} still holds {_named(left)} after the requeue; retry"
                    )
                store.mark_node_deleted(conn, name, self._clock.now())
                allocation_store.notify(conn, [f"fleet:{self._replica_id}:{name}"])
        log.info("node %s deleted (%d allocations moved off it)", name, len(live))
        self._allocator.refresh_nodes([name])
        if live:
            self._allocator.place_pending_if_leader()
        with self._engine.connect() as conn:
            return [allocation_store.get_allocation(conn, i, with_events=False) for i in live]

    def _check_deletable(self, conn: Connection, name: str) -> list[str]:
        """Lock the node; FAILED_PRECONDITION while its agent is reachable.
        Returns its live allocations."""
        node = store.lock_node_for_deletion(conn, name)
        if node.reachable:
            beat = node.last_heartbeat_at.isoformat() if node.last_heartbeat_at else "never"
            raise FailedPrecondition(
                _agent_still_there(name, f"is reachable (last heartbeat {beat})")
            )
        return store.live_allocations_on_node(conn, name)

    def list_nodes(self) -> list[NodeRecord]:
        with self._engine.connect() as conn:
            return store.list_nodes(conn)

    def get_node(self, name: str) -> NodeRecord:
        with self._engine.connect() as conn:
            return store.get_node(conn, name)

    def list_gpus(self, node: str = "") -> list[GpuRecord]:
        with self._engine.connect() as conn:
            if node:
                store.get_node(conn, node)  # NOT_FOUND for an unknown node, not an empty list
            return store.list_gpus(conn, node or None)

    def fleet_changed(self, nodes: Sequence[str]) -> None:
        """These nodes or their GPUs changed: refresh placement's view of them
        and give the queue a chance."""
        self._allocator.refresh_nodes(nodes)
        self._allocator.request_pending_pass()


def _agent_still_there(name: str, how: str) -> str:
    return (
        f"node {quoted(name)}: its agent {how}; stop its agent first, then delete the node "
        "once `gpupool nodes` shows it unreachable"
    )


def _named(allocation_ids: Sequence[str]) -> str:
    shown = ", ".join(allocation_ids[:NAMED_ALLOCATIONS])
    more = len(allocation_ids) - NAMED_ALLOCATIONS
    return f"{shown} and {more} more" if more > 0 else shown
