"""Who is calling: the trust issue's bearer tokens (scheduler/services/tokens.py).

A verified token is kept for a few seconds (as the scheduler does), so a
request costs no database round trip; a miss is checked on a worker thread,
never on the event loop. One check per token at a time: requests that miss
together wait for the same one (no stampede of queries when an entry
expires under load), and an entry past half its life is re-checked in the
background while requests go on using it, so a busy token's requests never
wait for the database. A revoked token is refused once a check after the
revocation reaches the database: seconds (this cache and the token service's).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from cachetools import TTLCache

from scheduler.domain.callers import Caller, Role
from scheduler.domain.errors import PermissionDenied, Unauthenticated
from scheduler.services.tokens import CACHE_TTL_S, TokenService

log = logging.getLogger(__name__)


class Authenticator(Protocol):
    async def authenticate(self, token: str, peer: str) -> Caller: ...


REFRESH_AFTER_S = CACHE_TTL_S / 2


class TokenAuthenticator:
    def __init__(self, tokens: TokenService, clock: Callable[[], float] = time.monotonic) -> None:
        self._tokens = tokens
        self._clock = clock
        # key -> (caller, when it was verified)
        self._cache: TTLCache[str, tuple[Caller, float]] = TTLCache(
            10_000, CACHE_TTL_S, timer=clock
        )
        self._checks: dict[str, asyncio.Task[Caller]] = {}  # bounded by tokens in use

    async def authenticate(self, token: str, peer: str) -> Caller:
        if not token:
            raise Unauthenticated("no bearer token (Authorization: Bearer gpp_…)")
        key = hashlib.sha256(token.encode()).hexdigest()
        found = self._cache.get(key)
        if found is not None:
            caller, verified = found
            if self._clock() - verified >= REFRESH_AFTER_S and key not in self._checks:
                self._check(key, token, peer)
            return caller
        check = self._checks.get(key) or self._check(key, token, peer)
        # A request that goes away does not cancel the check the others wait for.
        return await asyncio.shield(check)

    def _check(self, key: str, token: str, peer: str) -> asyncio.Task[Caller]:
        task = asyncio.get_running_loop().create_task(self._verify(key, token, peer))
        self._checks[key] = task

        def done(finished: asyncio.Task[Caller]) -> None:
            self._checks.pop(key, None)
            if not finished.cancelled():
                finished.exception()  # retrieved: a failed background check is logged below

        task.add_done_callback(done)
        return task

    async def _verify(self, key: str, token: str, peer: str) -> Caller:
        try:
            caller = await asyncio.to_thread(self._tokens.authenticate, token, peer)
        except Unauthenticated:
            self._cache.pop(key, None)  # revoked or expired: refused from now on
            raise
        except Exception:
            log.warning("token check failed; the cached entry (if any) stays until it expires",
                        exc_info=True)  # fmt: skip
            raise
        self._cache[key] = (caller, self._clock())
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
