"""GPU health as agents report it, and what follows from it: an unhealthy GPU
takes no new work, and the allocations on it are requeued (or failed)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import Engine

from scheduler.allocator.allocator import Allocator
from scheduler.domain.node_reports import GpuHealthReport
from scheduler.logs import gpu_changed
from scheduler.store import liveness

log = logging.getLogger(__name__)

HEALTH_STATES = ("healthy", "degraded", "unhealthy")

__all__ = ["HEALTH_STATES", "GpuHealthReport", "HealthService"]


class HealthService:
    def __init__(self, engine: Engine, allocator: Allocator) -> None:
        self._engine = engine
        self._allocator = allocator

    def apply(self, node: str, reports: Sequence[GpuHealthReport]) -> list[liveness.HealthChange]:
        """Store changed health; move work off GPUs that turned unhealthy."""
        known = {r.uuid: (r.health, r.reasons) for r in reports if r.health in HEALTH_STATES}
        if not known:
            return []
        with self._engine.begin() as conn:
            changes = liveness.apply_gpu_health(conn, node, known)
            failed = [c for c in changes if c.health == "unhealthy"]
            victims = liveness.active_allocations_on_gpus(conn, [c.gpu_id for c in failed])
        if not changes:
            return []
        for change in changes:
            gpu_changed(
                node,
                change.index,
                change.uuid,
                change.was,
                change.health,
                ", ".join(change.reasons),
            )
        # The snapshot must know before the requeue, or the work lands right back.
        self._allocator.refresh_nodes([node])
        if victims:
            reasons = "; ".join(
                f"GPU {c.index} ({c.uuid}) unhealthy: {', '.join(c.reasons) or 'no reason given'}"
                for c in failed
            )
            self._allocator.requeue(victims, f"{node}: {reasons}")
        if any(c.was == "unhealthy" for c in changes):
            self._allocator.request_pending_pass()
        return changes
