"""Node liveness: silent nodes become unreachable, and after a grace period
their work moves elsewhere; draining nodes are emptied the same way."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine

from scheduler.allocator.allocator import Allocator
from scheduler.background.leader import LeaderLease
from scheduler.domain.clock import Clock
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

    def run_once(self) -> LivenessResult:
        result = LivenessResult()
        if not self._leader.is_leader:
            return result
        now = self._clock.now()
        with self._engine.begin() as conn:
            result.unreachable = liveness.mark_unreachable(conn, now - self._timeout, now)
        if result.unreachable:
            for node in result.unreachable:
                node_changed(node, "reachable", "unreachable", "no heartbeat")
            self._allocator.refresh_nodes(result.unreachable)
        with self._engine.connect() as conn:
            to_move = liveness.allocations_to_move(conn, now - self._grace)
        grace = int(self._grace.total_seconds())
        for (node, reachable), allocation_ids in to_move.items():
            reason = (
                f"node {node} is draining"
                if reachable
                else f"node {node} has been unreachable for more than {grace}s"
            )
            result.moved[node] = self._allocator.requeue(allocation_ids, reason)
        return result
