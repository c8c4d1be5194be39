"""Priority-class grants: which classes each tenant's service tokens may ask for.

By default every class but critical (scheduler.domain.priorities); an admin
grants more or fewer with SetTenantPriorityClasses. Read on every Allocate
by a service caller, so grants are cached for CACHE_TTL_S: a change takes
effect at once on the replica that made it, within CACHE_TTL_S elsewhere.
"""

from __future__ import annotations

import threading

from cachetools import TTLCache
from sqlalchemy import Engine

from scheduler.domain.clock import Clock
from scheduler.domain.errors import InvalidArgument
from scheduler.domain.priorities import PRIORITY_CLASSES, default_granted_classes
from scheduler.store import grants as store

CACHE_TTL_S = 5.0
MAX_TENANT_NAME = 128


class PriorityGrants:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: TTLCache[str, frozenset[str]] = TTLCache(maxsize=10_000, ttl=CACHE_TTL_S)

    def granted(self, tenant: str) -> frozenset[str]:
        with self._lock:
            cached = self._cache.get(tenant)
        if cached is not None:
            return cached
        return self.granted_many([tenant])[tenant]

    def granted_many(self, tenants: list[str]) -> dict[str, frozenset[str]]:
        with self._engine.connect() as conn:
            explicit = store.load_grants(conn, tenants)
        found = {
            t: frozenset(c) if (c := explicit.get(t)) is not None else default_granted_classes()
            for t in tenants
        }
        with self._lock:
            self._cache.update(found)
        return found

    def set(self, tenant: str, classes: list[str], reset: bool) -> frozenset[str]:
        if not tenant or len(tenant) > MAX_TENANT_NAME:
            raise InvalidArgument(f"tenant name must be 1..{MAX_TENANT_NAME} characters")
        unknown = sorted(set(classes) - set(PRIORITY_CLASSES))
        if unknown:
            raise InvalidArgument(
                f"unknown priority classes {', '.join(c[:64] for c in unknown[:5])} "
                f"(known: {', '.join(PRIORITY_CLASSES)})"
            )
        if reset and classes:
            raise InvalidArgument("reset restores the default grant: give no classes with it")
        value = None if reset else sorted(set(classes))
        with self._engine.begin() as conn:
            store.save_grant(conn, tenant, value, self._clock.now())
        with self._lock:
            self._cache.pop(tenant, None)
        return self.granted(tenant)
