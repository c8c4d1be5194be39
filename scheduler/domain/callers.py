"""Who is calling: an identity with a role and a tenant, and the pure rules
of what that identity may touch. The API layer builds a `Caller` from a
bearer token or a client certificate; use cases receive it and ask these
functions, never gRPC metadata.

Roles (README "Security"):
- service: its own tenant's allocations (allocate, release, watch, get,
  list, report checkpoints, acknowledge preemption);
- viewer: read-only, every tenant;
- admin: everything;
- agent: one node, named by its certificate; it speaks only for that node.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

from scheduler.domain.errors import PermissionDenied


class Role(StrEnum):
    SERVICE = "service"
    VIEWER = "viewer"
    ADMIN = "admin"
    AGENT = "agent"


# Roles a token may carry (agents authenticate with certificates only).
TOKEN_ROLES = (Role.SERVICE, Role.VIEWER, Role.ADMIN)


@dataclass(frozen=True)
class Caller:
    name: str  # token name, certificate subject or "anonymous"
    role: Role
    tenant: str = ""  # a service's tenant; "" for roles that span tenants
    node: str = ""  # an agent's node
    credential: str = ""  # "token <id>", "certificate" or "insecure"
    peer: str = ""  # where the call came from (gRPC peer string)

    def describe(self) -> str:
        """How history and audit name this caller: "admin alice", "agent of node h100-0"."""
        if self.role is Role.AGENT:
            return f"agent of node {self.node}"
        if self.role is Role.SERVICE:
            return f"service {self.name} of tenant {self.tenant}"
        return f"{self.role.value} {self.name}"

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def reads_all_tenants(self) -> bool:
        return self.role in (Role.ADMIN, Role.VIEWER)


# The caller of work the scheduler does by itself (loops, tests of use cases).
SYSTEM = Caller(name="scheduler", role=Role.ADMIN, credential="internal")


def tenant_scope(caller: Caller) -> str | None:
    """The one tenant this caller is confined to, or None for all tenants."""
    return caller.tenant if caller.role is Role.SERVICE else None


def require_tenant(caller: Caller, tenant: str, what: str) -> None:
    """A service may only act on its own tenant's work."""
    scope = tenant_scope(caller)
    if scope is not None and scope != tenant:
        raise PermissionDenied(
            f"{what} belongs to tenant {tenant!r}; {caller.describe()} may only use "
            f"tenant {scope!r}'s (a token for tenant {tenant!r} or an admin is needed)"
        )
    if caller.role is Role.AGENT:
        raise PermissionDenied(f"{what}: an agent may not do this")


def require_node(caller: Caller, node: str, what: str) -> None:
    """An agent speaks only for the node its certificate names."""
    if caller.role is Role.AGENT and caller.node != node:
        raise PermissionDenied(
            f"{what} names node {node!r}, but this agent's certificate is for node "
            f"{caller.node!r}: an agent speaks only for its own node"
        )


def require_on_node(caller: Caller, nodes: Collection[str], what: str) -> None:
    """An agent may act on an allocation only if it is placed on its node."""
    if caller.role is Role.AGENT and caller.node not in nodes:
        raise PermissionDenied(
            f"{what} is not placed on node {caller.node!r}: an agent acts only for its node"
        )


def require_priority_class(caller: Caller, priority_class: str, allowed: Collection[str]) -> None:
    """A service asks only for the priority classes its tenant was granted."""
    if caller.role is Role.SERVICE and priority_class not in allowed:
        raise PermissionDenied(
            f"tenant {caller.tenant!r} may not use priority class {priority_class!r} "
            f"(it may use: {', '.join(sorted(allowed)) or 'none'}); an admin grants more with "
            f"`gpupool tenant priority-classes {caller.tenant} ...`"
        )
