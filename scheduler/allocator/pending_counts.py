"""How many allocations each tenant has waiting, as this replica last counted
them, for the per-tenant cap on the pending queue.

Counting a tenant's waiting rows is O(its queue): during a flood (20 tenants
with 1,000 waiting each) a batch that counted every asking tenant spent ~35 ms
on it. So a count is read at most once per COUNT_TTL_S and then counted up by
what this replica queues. It never counts down (what the queue places or
cancels), so it errs towards "full"; a refusal is therefore decided on a count
read within the last REFUSE_WITHIN_S. Other replicas' new rows are missed for
at most COUNT_TTL_S: the cap can be passed by what they queue in that time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

COUNT_TTL_S = 5.0
REFUSE_WITHIN_S = 1.0
MAX_TENANTS = 10_000  # beyond this many, entries past their TTL are dropped


@dataclass(frozen=True)
class Count:
    waiting: int
    read_at: float  # when the database last counted it (timer's clock)


class PendingCounts:
    def __init__(self, timer: Callable[[], float] = time.monotonic) -> None:
        self._timer = timer
        self._counts: dict[str, Count] = {}

    def usable(self, tenant: str) -> int | None:
        """The tenant's waiting count if it is recent enough to admit by."""
        count = self._counts.get(tenant)
        if count is None or self._timer() - count.read_at > COUNT_TTL_S:
            return None
        return count.waiting

    def may_refuse_by(self, tenant: str) -> bool:
        """Whether the count was read recently enough to refuse by."""
        count = self._counts.get(tenant)
        return count is not None and self._timer() - count.read_at <= REFUSE_WITHIN_S

    def unknown(self, tenants: Iterable[str]) -> list[str]:
        """The tenants without a usable count, sorted (one query for them all)."""
        return sorted({t for t in tenants if self.usable(t) is None})

    def read(self, counts: Mapping[str, int], at: float | None = None) -> None:
        """Counts the database just gave (tenants missing from a GROUP BY: pass 0)."""
        read_at = self._timer() if at is None else at
        for tenant, waiting in counts.items():
            self._counts[tenant] = Count(waiting, read_at)
        if len(self._counts) > MAX_TENANTS:
            now = self._timer()
            self._counts = {t: c for t, c in self._counts.items() if now - c.read_at <= COUNT_TTL_S}

    def add(self, queued: Mapping[str, int]) -> None:
        """Rows this replica just queued (committed) for tenants it has counts for."""
        for tenant, n in queued.items():
            count = self._counts.get(tenant)
            if count is not None:
                self._counts[tenant] = Count(count.waiting + n, count.read_at)

    def now(self) -> float:
        return self._timer()
