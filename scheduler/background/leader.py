"""Leader election on a lease row with an epoch (DESIGN.md principle 5).

One row, ``leader_lease``, says who leads, until when, and under which epoch.
A replica takes the lease only once it has expired, raising the epoch; the
leader renews it every third of its time to live. Work done as leader checks
the epoch inside its own transaction (``fence``), holding the row FOR SHARE
until it commits: a paused or partitioned ex-leader cannot act after another
replica took over, because the takeover either waits for its transaction or
has already raised the epoch it checks.

Why not an advisory lock (the earlier design): it fences nothing. A leader
that is paused keeps its session, so nobody takes over; one whose session
drops keeps believing it leads until its next tick.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from scheduler.domain.errors import LeaseLost

log = logging.getLogger(__name__)

DEFAULT_LEASE_TTL_S = 5.0

# Take the lease when it has expired (or its row is missing: a truncated table).
_TAKE = text(
    """
    INSERT INTO leader_lease (id, epoch, holder, expires_at)
    VALUES (1, 1, :me, clock_timestamp() + make_interval(secs => :ttl))
    ON CONFLICT (id) DO UPDATE
       SET epoch = leader_lease.epoch + 1,
           holder = EXCLUDED.holder,
           expires_at = EXCLUDED.expires_at
     WHERE leader_lease.expires_at < clock_timestamp()
    RETURNING epoch
    """
)
_RENEW = text(
    """
    UPDATE leader_lease SET expires_at = clock_timestamp() + make_interval(secs => :ttl)
     WHERE id = 1 AND holder = :me AND epoch = :epoch AND expires_at > clock_timestamp()
    RETURNING epoch
    """
)
_RELEASE = text(
    "UPDATE leader_lease SET expires_at = '-infinity' "
    "WHERE id = 1 AND holder = :me AND epoch = :epoch"
)
_FENCE = text(
    "SELECT 1 FROM leader_lease WHERE id = 1 AND holder = :me AND epoch = :epoch "
    "AND expires_at > clock_timestamp() FOR SHARE"
)


class LeaderLease:
    def __init__(
        self,
        engine: Engine,
        replica_id: str,
        ttl_s: float = DEFAULT_LEASE_TTL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._me = replica_id
        self.ttl_s = ttl_s
        self._monotonic = monotonic
        self._epoch: int | None = None
        # Leadership ends here by our own clock even if no renewal could tell us:
        # a little before the row expires, so two replicas never both believe it.
        self._valid_until = 0.0
        self._lock = threading.Lock()
        # Told when this replica becomes the leader (under the new epoch).
        self.on_elected: Callable[[int], None] = lambda epoch: None

    @property
    def renew_every_s(self) -> float:
        return self.ttl_s / 3

    @property
    def is_leader(self) -> bool:
        return self.epoch is not None

    @property
    def epoch(self) -> int | None:
        """The epoch this replica leads under, or None."""
        epoch = self._epoch
        if epoch is not None and self._monotonic() >= self._valid_until:
            return None
        return epoch

    def run_once(self) -> bool:
        """Take the lease if it expired, or renew ours; returns leadership."""
        with self._lock:
            started = self._monotonic()
            held = self._epoch if started < self._valid_until else None
            try:
                with self._engine.begin() as conn:
                    if held is not None:
                        params = {"me": self._me, "epoch": held, "ttl": self.ttl_s}
                        row = conn.execute(_RENEW, params).first()
                    else:
                        row = conn.execute(_TAKE, {"me": self._me, "ttl": self.ttl_s}).first()
            except DBAPIError as exc:
                log.warning("leader lease: database unavailable (%s)", type(exc.orig).__name__)
                row = None
            was_leader = self._epoch is not None
            if row is None:
                if was_leader:
                    log.warning("this replica lost the leader lease (epoch %s)", self._epoch)
                self._epoch = None
                return False
            epoch = int(row[0])
            if held is None:
                log.info("this replica is now the leader (epoch %d)", epoch)
                # Before the epoch is published: no loop may act as leader
                # until what on_elected sets up (liveness's grace) is in place.
                self.on_elected(epoch)
            self._valid_until = started + self.ttl_s * 0.8
            self._epoch = epoch
            return True

    def fence(self, conn: Connection) -> int:
        """Inside a transaction about to do leader-only work: hold the lease row
        until it commits, or raise LeaseLost (and stop leading)."""
        epoch = self.epoch
        if epoch is not None:
            row = conn.execute(_FENCE, {"me": self._me, "epoch": epoch}).first()
            if row is not None:
                return epoch
            self.lost(epoch)
        raise LeaseLost("this replica is no longer the leader")

    def lost(self, epoch: int) -> None:
        with self._lock:
            if self._epoch == epoch:
                log.warning("this replica lost the leader lease (epoch %d)", epoch)
                self._epoch = None

    def close(self) -> None:
        """Hand the lease back so another replica takes over at its next tick."""
        with self._lock:
            epoch, self._epoch = self._epoch, None
            if epoch is None:
                return
            try:
                with self._engine.begin() as conn:
                    conn.execute(_RELEASE, {"me": self._me, "epoch": epoch})
            except DBAPIError:
                pass  # the lease expires on its own
