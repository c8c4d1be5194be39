"""Bearer tokens: create, list, revoke, and turn a presented token into a Caller.

A token reads `gpp_<id>_<secret>`: the id finds the row, the secret (256
random bits) is checked against its stored SHA-256 in constant time.
Verified tokens are cached for CACHE_TTL_S so that an Allocate costs no
extra database round trip; revoking on this replica takes effect at once,
on other replicas within CACHE_TTL_S.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cachetools import TTLCache
from sqlalchemy import Engine

from scheduler.domain.callers import TOKEN_ROLES, Caller, Role
from scheduler.domain.clock import Clock
from scheduler.domain.errors import InvalidArgument, NotFound, Unauthenticated
from scheduler.store import tokens as store

PREFIX = "gpp"
CACHE_TTL_S = 5.0
MAX_TTL_S = 10 * 365 * 86400
_TOKEN = re.compile(rf"^{PREFIX}_([0-9a-f]{{12}})_([0-9a-f]{{64}})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


@dataclass(frozen=True)
class TokenRecord:
    id: str
    name: str
    role: Role
    tenant: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TokenRecord:
        return cls(
            id=row["id"],
            name=row["name"],
            role=Role(row["role"]),
            tenant=row["tenant"],
            created_at=row["created_at"],
            created_by=row["created_by"],
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
        )


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenService:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock
        self._lock = threading.Lock()
        # sha256(whole token) -> its record; never the token itself in memory.
        self._verified: TTLCache[str, TokenRecord] = TTLCache(maxsize=10_000, ttl=CACHE_TTL_S)

    def create(
        self, caller: Caller, name: str, role: Role, tenant: str, ttl_s: int = 0
    ) -> tuple[TokenRecord, str]:
        """A new token and its secret, which is shown this once."""
        if not _NAME.match(name):
            raise InvalidArgument(
                f"token name {name[:64]!r} must be 1-128 letters, digits, '.', '_', '@' or '-'"
            )
        if role not in TOKEN_ROLES:
            raise InvalidArgument(
                f"a token's role is one of {', '.join(r.value for r in TOKEN_ROLES)} "
                "(agents use certificates: gpupool certs issue-agent)"
            )
        if role is Role.SERVICE and not tenant:
            raise InvalidArgument("a service token needs a tenant (--tenant)")
        if role is not Role.SERVICE and tenant:
            raise InvalidArgument(f"a {role.value} token spans every tenant: leave tenant empty")
        if not 0 <= ttl_s <= MAX_TTL_S:
            raise InvalidArgument(f"ttl_seconds must be 0 (never expires) to {MAX_TTL_S}")
        now = self._clock.now()
        token_id, secret = secrets.token_hex(6), secrets.token_hex(32)
        row = {
            "id": token_id,
            "name": name,
            "role": role.value,
            "tenant": tenant,
            "secret_sha256": _sha256(secret),
            "created_at": now,
            "created_by": caller.describe(),
            "expires_at": now + timedelta(seconds=ttl_s) if ttl_s else None,
            "revoked_at": None,
        }
        with self._engine.begin() as conn:
            store.insert_token(conn, row)
        return TokenRecord.from_row(row), f"{PREFIX}_{token_id}_{secret}"

    def list(self, tenant: str = "", include_revoked: bool = False) -> list[TokenRecord]:
        with self._engine.connect() as conn:
            rows = store.list_tokens(conn, tenant, include_revoked)
        return [TokenRecord.from_row(r) for r in rows]

    def revoke(self, token_id: str) -> TokenRecord:
        with self._engine.begin() as conn:
            row = store.revoke_token(conn, token_id, self._clock.now())
        if row is None:
            raise NotFound(f"no token {token_id[:64]!r}")
        with self._lock:
            for key in [k for k, record in self._verified.items() if record.id == token_id]:
                self._verified.pop(key, None)
        return TokenRecord.from_row(row)

    def authenticate(self, token: str, peer: str) -> Caller:
        """The caller a bearer token proves, or Unauthenticated saying why not."""
        key = _sha256(token)
        with self._lock:
            record = self._verified.get(key)
        if record is None:
            record = self._verify(token)
            with self._lock:
                self._verified[key] = record
        if record.expires_at is not None and record.expires_at <= self._clock.now():
            raise Unauthenticated(
                f"token {record.id} expired at {record.expires_at:%Y-%m-%d %H:%M}"
            )
        return Caller(
            name=record.name,
            role=record.role,
            tenant=record.tenant,
            credential=f"token {record.id}",
            peer=peer,
        )

    def _verify(self, token: str) -> TokenRecord:
        match = _TOKEN.match(token)
        if match is None:
            raise Unauthenticated("the bearer token is malformed (expected gpp_<id>_<secret>)")
        token_id, secret = match.groups()
        with self._engine.connect() as conn:
            row = store.get_token(conn, token_id)
        if row is None or not hmac.compare_digest(row["secret_sha256"], _sha256(secret)):
            raise Unauthenticated("the bearer token is not known to this scheduler")
        if row["revoked_at"] is not None:
            raise Unauthenticated(f"token {token_id} was revoked")
        return TokenRecord.from_row(row)
