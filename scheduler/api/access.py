"""Which roles may call which RPC, and which RPCs change state (and are audited).

Every RPC of the three services has a rule here: a method without one is
refused (tests/unit/test_access_rules.py checks the table is complete).
Tenant and node scoping happen in the use cases, which know what a request
touches; this table only says who may knock.
"""

from __future__ import annotations

from scheduler.domain.callers import Role

SERVICE, VIEWER, ADMIN, AGENT = Role.SERVICE, Role.VIEWER, Role.ADMIN, Role.AGENT

_TENANT_WORK = frozenset({SERVICE, ADMIN})
_TENANT_READ = frozenset({SERVICE, VIEWER, ADMIN})
_FLEET_READ = frozenset({VIEWER, ADMIN})
_ADMIN = frozenset({ADMIN})
# An admin may stand in for an agent (e.g. to register a node by hand); the
# use cases confine a real agent to its own node.
_NODE = frozenset({AGENT, ADMIN})

RULES: dict[str, frozenset[Role]] = {
    "/gpupool.v1.Scheduler/Allocate": _TENANT_WORK,
    "/gpupool.v1.Scheduler/Release": _TENANT_WORK,
    "/gpupool.v1.Scheduler/AllocateMany": _TENANT_WORK,
    "/gpupool.v1.Scheduler/ReleaseMany": _TENANT_WORK,
    "/gpupool.v1.Scheduler/GetAllocation": _TENANT_READ,
    "/gpupool.v1.Scheduler/ListAllocations": _TENANT_READ,
    "/gpupool.v1.Scheduler/WatchAllocation": _TENANT_READ,
    "/gpupool.v1.Scheduler/AckPreemption": frozenset({SERVICE, ADMIN, AGENT}),
    "/gpupool.v1.Scheduler/ReportCheckpoint": frozenset({SERVICE, ADMIN, AGENT}),
    "/gpupool.v1.Admin/ListNodes": _FLEET_READ,
    "/gpupool.v1.Admin/GetNode": _FLEET_READ,
    "/gpupool.v1.Admin/ListGpus": _FLEET_READ,
    "/gpupool.v1.Admin/ListAllocations": _FLEET_READ,
    "/gpupool.v1.Admin/GetAllocation": _FLEET_READ,
    "/gpupool.v1.Admin/ReleaseAllocation": _ADMIN,
    "/gpupool.v1.Admin/CordonNode": _ADMIN,
    "/gpupool.v1.Admin/UncordonNode": _ADMIN,
    "/gpupool.v1.Admin/DrainNode": _ADMIN,
    "/gpupool.v1.Admin/GetCatalogue": _TENANT_READ,
    "/gpupool.v1.Admin/InjectFault": _ADMIN,
    "/gpupool.v1.Admin/Preempt": _ADMIN,
    "/gpupool.v1.Admin/ListQueue": _FLEET_READ,
    "/gpupool.v1.Admin/SetTenantQuota": _ADMIN,
    "/gpupool.v1.Admin/ListTenants": _FLEET_READ,
    "/gpupool.v1.Admin/InterruptNode": _ADMIN,
    "/gpupool.v1.Admin/ListModels": _TENANT_READ,
    "/gpupool.v1.Admin/WorkerLogs": _FLEET_READ,
    "/gpupool.v1.Admin/SetTenantPriorityClasses": _ADMIN,
    "/gpupool.v1.Admin/CreateToken": _ADMIN,
    "/gpupool.v1.Admin/ListTokens": _ADMIN,
    "/gpupool.v1.Admin/RevokeToken": _ADMIN,
    "/gpupool.v1.Admin/ListAuditEvents": _ADMIN,
    "/gpupool.v1.Admin/GetAllocatorStats": _FLEET_READ,
    "/gpupool.v1.Admin/DeleteNode": _ADMIN,
    "/gpupool.v1.Admin/WatchFleet": _FLEET_READ,
    "/gpupool.v1.Agents/RegisterNode": _NODE,
    "/gpupool.v1.Agents/Heartbeat": _NODE,
    "/gpupool.v1.Agents/Connect": _NODE,
    # Deployments (issue 13): tenant-scoped in the use cases.
    "/gpupool.v1.Deployments/Create": _TENANT_WORK,
    "/gpupool.v1.Deployments/Get": _TENANT_READ,
    "/gpupool.v1.Deployments/List": _TENANT_READ,
    "/gpupool.v1.Deployments/Scale": _TENANT_WORK,
    "/gpupool.v1.Deployments/Pause": _TENANT_WORK,
    "/gpupool.v1.Deployments/Resume": _TENANT_WORK,
    "/gpupool.v1.Deployments/Delete": _TENANT_WORK,
    "/gpupool.v1.Deployments/History": _TENANT_READ,
    "/gpupool.v1.Deployments/WatchReplicas": _TENANT_READ,
    # Cost (issue 13): a service sees its own tenant only (the use case checks).
    "/gpupool.v1.Cost/GetCost": _TENANT_READ,
    "/gpupool.v1.Cost/GetPrices": _TENANT_READ,
    # Router (issue 14): a service routes its own tenant's deployments (the use case checks).
    "/gpupool.v1.Router/Route": _TENANT_WORK,
    "/gpupool.v1.Router/Complete": _TENANT_WORK,
    "/gpupool.v1.Router/Explain": _TENANT_READ,
}

# Open to anyone who completed the TLS handshake: load balancers probe these.
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

# Calls that change state: each leaves an audit event, allowed or not.
# (Heartbeats and the agent stream are the agents' steady state; their
# effects show in allocation history and node state instead.)
AUDITED = frozenset(
    {
        "/gpupool.v1.Scheduler/Allocate",
        "/gpupool.v1.Scheduler/Release",
        "/gpupool.v1.Scheduler/AllocateMany",
        "/gpupool.v1.Scheduler/ReleaseMany",
        "/gpupool.v1.Scheduler/AckPreemption",
        "/gpupool.v1.Scheduler/ReportCheckpoint",
        "/gpupool.v1.Admin/ReleaseAllocation",
        "/gpupool.v1.Admin/CordonNode",
        "/gpupool.v1.Admin/UncordonNode",
        "/gpupool.v1.Admin/DrainNode",
        "/gpupool.v1.Admin/InjectFault",
        "/gpupool.v1.Admin/Preempt",
        "/gpupool.v1.Admin/SetTenantQuota",
        "/gpupool.v1.Admin/InterruptNode",
        "/gpupool.v1.Admin/SetTenantPriorityClasses",
        "/gpupool.v1.Admin/CreateToken",
        "/gpupool.v1.Admin/RevokeToken",
        "/gpupool.v1.Admin/DeleteNode",
        "/gpupool.v1.Agents/RegisterNode",
        "/gpupool.v1.Agents/Connect",
        "/gpupool.v1.Deployments/Create",
        "/gpupool.v1.Deployments/Scale",
        "/gpupool.v1.Deployments/Pause",
        "/gpupool.v1.Deployments/Resume",
        "/gpupool.v1.Deployments/Delete",
    }
)


def short_name(method: str) -> str:
    """ "/gpupool.v1.Scheduler/Release" -> "Scheduler/Release"."""
    service, _, name = method.rpartition("/")
    return f"{service.rsplit('.', 1)[-1]}/{name}"


def roles_needed(roles: frozenset[Role]) -> str:
    order = [r for r in (SERVICE, VIEWER, ADMIN, AGENT) if r in roles]
    return " or ".join(r.value for r in order)
