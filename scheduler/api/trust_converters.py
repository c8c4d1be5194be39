"""Converters for the trust messages: tokens, audit events, tenants with grants."""

from __future__ import annotations

from collections.abc import Set

from gpupool.v1 import admin_pb2
from scheduler.api.converters import timestamp
from scheduler.domain.callers import Role
from scheduler.domain.errors import InvalidArgument
from scheduler.services.audit import AuditEvent
from scheduler.services.tenants import TenantRecord
from scheduler.services.tokens import TokenRecord

_ROLES = {
    admin_pb2.TOKEN_ROLE_SERVICE: Role.SERVICE,
    admin_pb2.TOKEN_ROLE_VIEWER: Role.VIEWER,
    admin_pb2.TOKEN_ROLE_ADMIN: Role.ADMIN,
}
_ROLE_ENUMS = {role: value for value, role in _ROLES.items()}


def token_role(value: admin_pb2.TokenRole) -> Role:
    if value not in _ROLES:
        raise InvalidArgument(
            "role must be TOKEN_ROLE_SERVICE, TOKEN_ROLE_VIEWER or TOKEN_ROLE_ADMIN"
        )
    return _ROLES[value]


def token_message(record: TokenRecord) -> admin_pb2.Token:
    return admin_pb2.Token(
        id=record.id,
        name=record.name,
        role=_ROLE_ENUMS[record.role],
        tenant=record.tenant,
        created_at=timestamp(record.created_at),
        created_by=record.created_by,
        expires_at=timestamp(record.expires_at),
        revoked_at=timestamp(record.revoked_at),
    )


def audit_message(event: AuditEvent) -> admin_pb2.AuditEvent:
    return admin_pb2.AuditEvent(
        at=timestamp(event.at),
        actor=event.actor,
        role=event.role,
        tenant=event.tenant,
        node=event.node,
        method=event.method,
        target=event.target,
        peer=event.peer,
        code=event.code,
        detail=event.detail,
    )


def tenant_message(record: TenantRecord, granted: Set[str]) -> admin_pb2.Tenant:
    return admin_pb2.Tenant(**vars(record), priority_classes=sorted(granted))
