"""Node liveness: silent nodes become unreachable, and after a grace period
their work moves elsewhere; draining nodes are emptied the same way."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from scheduler.allocator.allocator import Allocator
from scheduler.background.leader import LeaderLease
from scheduler.domain.clock import Clock
from scheduler.domain.errors import LeaseLost
from scheduler.logs import node_changed
from scheduler.store import liveness

log = logging.getLogger(__name__)


@dataclass
class LivenessResult:
    unreachable: list[str] = field(default_factory=list)
    moved: dict[str, int] = field(default_factory=dict)  # node -> allocations moved


class NodeLivenessLoop:
    def __init__(
        self,
        engine: Engine,
        allocator: Allocator,
        leader: LeaderLease,
        clock: Clock,
        heartbeat_timeout_s: float,
        failover_grace_s: float,
    ) -> None:
        self._engine = engine
        self._allocator = allocator
        self._leader = leader
        self._clock = clock
        self._timeout = timedelta(seconds=heartbeat_timeout_s)
        self._grace = timedelta(seconds=failover_grace_s)
        self._outage = False  # the database failed us since we last judged
        self._back_at: datetime | None = None  # when it answered again

    def leadership_began(self) -> None:
        """A new leader has not seen heartbeats land yet (none were stored
        while no replica led, or the old leader's view is not ours): it judges
        silence only a whole timeout from now, as after an outage."""
        self._back_at = self._clock.now()

    def run_once(self) -> LivenessResult:
        result = LivenessResult()
        if not self._leader.is_leader:
            return result
        now = self._clock.now()
        # Right after a database outage every heartbeat looks old: none could
        # be stored. Judge silence again only once a whole timeout of
        # heartbeats has had the chance to land.
        judging = self._back_at is None or now - self._back_at >= self._timeout
        try:
            with self._engine.begin() as conn:
                self._leader.fence(conn)  # a stale leader must not judge nodes
                if self._outage:
                    self._outage, self._back_at = False, now
                elif judging:
                    result.unreachable = liveness.mark_unreachable(conn, now - self._timeout, now)
        except LeaseLost:
            return result
        except DBAPIError:
            self._outage = True
            return result
        if result.unreachable:
            for node in result.unreachable:
                node_changed(node, "reachable", "unreachable", "no heartbeat")
            self._allocator.refresh_nodes(result.unreachable)
        if not judging or self._back_at == now:
            return result  # a node that came back meanwhile is not stored as back yet
        try:
            with self._engine.connect() as conn:
                to_move = liveness.allocations_to_move(conn, now - self._grace)
        except DBAPIError:
            self._outage = True
            return result
        grace = int(self._grace.total_seconds())
        for (node, reachable), allocation_ids in to_move.items():
            reason = (
                f"node {node} is draining"
                if reachable
                else f"node {node} has been unreachable for more than {grace}s"
            )
            try:
                result.moved[node] = self._allocator.requeue(allocation_ids, reason, True)
            except LeaseLost:
                return result
        return result
