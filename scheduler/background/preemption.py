"""Preemption deadlines: a victim that has not acknowledged by its deadline
is revoked anyway (and requeued with its latest checkpoint)."""

from __future__ import annotations

import logging

from sqlalchemy import Engine, select

from scheduler.allocator.allocator import Allocator
from scheduler.background.leader import LeaderLease
from scheduler.domain.clock import Clock
from scheduler.domain.errors import LeaseLost
from scheduler.store.allocations import allocations_t

log = logging.getLogger(__name__)


class PreemptionDeadlineLoop:
    def __init__(
        self, engine: Engine, allocator: Allocator, leader: LeaderLease, clock: Clock
    ) -> None:
        self._engine = engine
        self._allocator = allocator
        self._leader = leader
        self._clock = clock

    def run_once(self) -> list[str]:
        """Revoke every overdue victim; returns their ids."""
        if not self._leader.is_leader:
            return []
        with self._engine.connect() as conn:
            overdue = list(
                conn.execute(
                    select(allocations_t.c.id)
                    .where(allocations_t.c.state == "preempting")
                    .where(allocations_t.c.preemption_deadline <= self._clock.now())
                    .order_by(allocations_t.c.preemption_deadline)
                ).scalars()
            )
        for allocation_id in overdue:
            log.info("preemption deadline passed for %s: revoking", allocation_id)
            try:
                self._allocator.revoke(allocation_id, "", "deadline")
            except LeaseLost:
                return []  # the new leader revokes it
        return overdue
