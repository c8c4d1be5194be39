"""Leader election on a PostgreSQL advisory lock (DESIGN.md principle 5).

The lock lives as long as the session holding it: if this replica dies or
its connection drops, PostgreSQL releases it and another replica takes over
at its next tick.
"""

from __future__ import annotations

import logging
import threading

import psycopg

log = logging.getLogger(__name__)

LEADER_LOCK_KEY = 0x67706C64  # "gpld"


class LeaderLease:
    def __init__(self, conninfo: str, key: int = LEADER_LOCK_KEY) -> None:
        self._conninfo = conninfo
        self._key = key
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._leader = False
        self._lock = threading.Lock()

    @property
    def is_leader(self) -> bool:
        return self._leader

    def run_once(self) -> bool:
        """Take the lock if free, or check we still hold it; returns leadership."""
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._leader = False
                    self._conn = psycopg.connect(self._conninfo, autocommit=True)
                if self._leader:
                    self._conn.execute("SELECT 1")
                else:
                    row = self._conn.execute(
                        "SELECT pg_try_advisory_lock(%s)", (self._key,)
                    ).fetchone()
                    self._leader = bool(row and row[0])
                    if self._leader:
                        log.info("this replica is now the leader")
            except psycopg.Error as exc:
                log.warning("leader lease connection failed: %s", exc)
                self._leader = False
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
            return self._leader

    def close(self) -> None:
        with self._lock:
            self._leader = False
            if self._conn is not None:
                self._conn.close()
                self._conn = None
