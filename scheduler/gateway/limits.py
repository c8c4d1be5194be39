"""Per-tenant rate limits: token buckets for requests and tokens per minute."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """`capacity` units, refilled at `rate_per_s`; a request takes `cost` or waits."""

    capacity: float
    rate_per_s: float
    level: float = field(default=-1.0)
    updated: float = 0.0

    def refill(self, now: float) -> None:
        if self.level < 0:
            self.level, self.updated = self.capacity, now
            return
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate_per_s)
        self.updated = now

    def wait_s(self, cost: float, now: float) -> float:
        """0 if `cost` can be taken now, else seconds until it can (no units taken)."""
        self.refill(now)
        # A request bigger than the bucket waits for a full bucket, never forever.
        need = min(cost, self.capacity)
        if self.level >= need:
            return 0.0
        return (need - self.level) / self.rate_per_s

    def take(self, cost: float) -> None:
        self.level -= min(cost, self.capacity)


@dataclass(frozen=True)
class Limits:
    """0 means unlimited."""

    requests_per_minute: float = 0.0
    tokens_per_minute: float = 0.0


class TenantLimiter:
    """Both buckets per tenant; a request passes only if both allow it."""

    def __init__(
        self,
        default: Limits,
        per_tenant: dict[str, Limits] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._default = default
        self._per_tenant = per_tenant or {}
        self._clock = clock
        self._buckets: dict[str, tuple[TokenBucket | None, TokenBucket | None]] = {}

    def _for(self, tenant: str) -> tuple[TokenBucket | None, TokenBucket | None]:
        buckets = self._buckets.get(tenant)
        if buckets is None:
            limits = self._per_tenant.get(tenant, self._default)
            rpm, tpm = limits.requests_per_minute, limits.tokens_per_minute
            buckets = (
                TokenBucket(rpm, rpm / 60) if rpm > 0 else None,
                TokenBucket(tpm, tpm / 60) if tpm > 0 else None,
            )
            self._buckets[tenant] = buckets
        return buckets

    def admit(self, tenant: str, tokens: int) -> int:
        """0 if admitted (both buckets charged), else the Retry-After in whole seconds."""
        now = self._clock()
        requests, token_bucket = self._for(tenant)
        wait = 0.0
        if requests is not None:
            wait = max(wait, requests.wait_s(1, now))
        if token_bucket is not None:
            wait = max(wait, token_bucket.wait_s(tokens, now))
        if wait > 0:
            return max(1, math.ceil(wait))
        if requests is not None:
            requests.take(1)
        if token_bucket is not None:
            token_bucket.take(tokens)
        return 0
