"""Who is calling: the trust issue's bearer tokens (scheduler/services/tokens.py).

A verified token is kept for a few seconds (as the scheduler does), so a
request costs no database round trip; a miss is checked on a worker thread,
never on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from typing import Protocol

from cachetools import TTLCache

from scheduler.domain.callers import Caller, Role
from scheduler.domain.errors import PermissionDenied, Unauthenticated
from scheduler.services.tokens import CACHE_TTL_S, TokenService


class Authenticator(Protocol):
    async def authenticate(self, token: str, peer: str) -> Caller: ...


class TokenAuthenticator:
    def __init__(self, tokens: TokenService, clock: Callable[[], float] = time.monotonic) -> None:
        self._tokens = tokens
        self._cache: TTLCache[str, Caller] = TTLCache(10_000, CACHE_TTL_S, timer=clock)

    async def authenticate(self, token: str, peer: str) -> Caller:
        if not token:
            raise Unauthenticated("no bearer token (Authorization: Bearer gpp_…)")
        key = hashlib.sha256(token.encode()).hexdigest()
        caller = self._cache.get(key)
        if caller is None:
            caller = await asyncio.to_thread(self._tokens.authenticate, token, peer)
            self._cache[key] = caller
        return caller


def bearer(header: str) -> str:
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def inference_tenant(caller: Caller) -> str | None:
    """The tenant whose deployments `caller` may send requests to (None: all, admins)."""
    if caller.role is Role.ADMIN:
        return None
    if caller.role is Role.SERVICE and caller.tenant:
        return caller.tenant
    raise PermissionDenied(f"{caller.describe()} may not send inference requests")


def reading_tenant(caller: Caller) -> str | None:
    """The tenant whose deployments `caller` may list (None: all)."""
    return None if caller.reads_all_tenants else caller.tenant
