"""Whether this replica can reach its database, for gRPC health checks: a
load balancer or kubelet stops sending traffic to a replica that answers
every call UNAVAILABLE, and sends it again once the database is back."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)


class DatabaseHealthLoop:
    def __init__(self, engine: Engine, on_change: Callable[[bool], None]) -> None:
        self._engine = engine
        self._on_change = on_change
        self.reachable = True

    def run_once(self) -> bool:
        try:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            reachable = True
        except DBAPIError as exc:
            reachable = False
            if self.reachable:
                log.warning("database unreachable (%s): health NOT_SERVING", type(exc).__name__)
        if reachable and not self.reachable:
            log.info("database reachable again: health SERVING")
        if reachable != self.reachable:
            self.reachable = reachable
            self._on_change(reachable)
        return reachable
