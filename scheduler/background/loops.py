"""Periodic loops (APScheduler). Each job is a run_once() that tests call directly."""

from __future__ import annotations

import logging

from apscheduler.schedulers.background import BackgroundScheduler

from scheduler.allocator.allocator import Allocator
from scheduler.background.db_health import DatabaseHealthLoop
from scheduler.background.leader import LeaderLease
from scheduler.background.liveness import NodeLivenessLoop
from scheduler.background.preemption import PreemptionDeadlineLoop
from scheduler.services.agents import HeartbeatRecorder

log = logging.getLogger(__name__)


class PendingQueueLoop:
    """The leader retries the pending queue now and then, even without a
    capacity notification (one could have been lost)."""

    def __init__(self, allocator: Allocator, leader: LeaderLease) -> None:
        self._allocator = allocator
        self._leader = leader

    def run_once(self) -> None:
        if self._leader.is_leader:
            self._allocator.request_pending_pass()


def start_loops(
    leader: LeaderLease,
    queue_loop: PendingQueueLoop,
    heartbeats: HeartbeatRecorder,
    liveness: NodeLivenessLoop,
    preemption: PreemptionDeadlineLoop,
    heartbeat_interval_s: float,
    database_health: DatabaseHealthLoop,
) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(daemon=True)
    defaults = {"max_instances": 1, "coalesce": True}
    every = leader.renew_every_s
    scheduler.add_job(leader.run_once, "interval", seconds=every, jitter=every / 10, **defaults)
    scheduler.add_job(queue_loop.run_once, "interval", seconds=5, jitter=1, **defaults)
    # Heartbeats are written in one batch per period, at most a second apart
    # (the acknowledgement waits for it); liveness checks as often.
    period = min(1.0, max(0.2, heartbeat_interval_s / 2))
    scheduler.add_job(heartbeats.run_once, "interval", seconds=period, **defaults)
    scheduler.add_job(liveness.run_once, "interval", seconds=period, jitter=period / 4, **defaults)
    scheduler.add_job(preemption.run_once, "interval", seconds=1, **defaults)
    scheduler.add_job(database_health.run_once, "interval", seconds=1, **defaults)
    scheduler.start()
    return scheduler
