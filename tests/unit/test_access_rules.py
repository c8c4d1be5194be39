"""The access table covers every RPC, and the pure caller rules hold."""

from __future__ import annotations

import pytest

from gpupool.v1 import admin_pb2, agents_pb2, cost_pb2, deployments_pb2, router_pb2, scheduler_pb2
from scheduler.api.access import AUDITED, RULES
from scheduler.domain.callers import (
    Caller,
    Role,
    require_node,
    require_on_node,
    require_priority_class,
    require_tenant,
    tenant_scope,
)
from scheduler.domain.errors import PermissionDenied
from scheduler.domain.priorities import default_granted_classes

SERVICES = [
    scheduler_pb2.DESCRIPTOR.services_by_name["Scheduler"],
    admin_pb2.DESCRIPTOR.services_by_name["Admin"],
    agents_pb2.DESCRIPTOR.services_by_name["Agents"],
    cost_pb2.DESCRIPTOR.services_by_name["Cost"],
    deployments_pb2.DESCRIPTOR.services_by_name["Deployments"],
    router_pb2.DESCRIPTOR.services_by_name["Router"],
]
ALL_METHODS = {f"/{s.full_name}/{m.name}" for s in SERVICES for m in s.methods}

ALICE = Caller("alice", Role.ADMIN)
VIEWER = Caller("dash", Role.VIEWER)
TEAM_A = Caller("svc", Role.SERVICE, tenant="team-a")
AGENT = Caller("h100-0", Role.AGENT, node="h100-0")


def test_every_rpc_has_a_rule_and_nothing_else_does() -> None:
    assert set(RULES) == ALL_METHODS
    assert AUDITED <= ALL_METHODS


def test_admin_only_calls_stay_admin_only() -> None:
    for name in ("SetTenantQuota", "CreateToken", "RevokeToken", "DrainNode", "Preempt"):
        assert RULES[f"/gpupool.v1.Admin/{name}"] == {Role.ADMIN}
    assert Role.SERVICE not in RULES["/gpupool.v1.Agents/RegisterNode"]
    assert Role.VIEWER not in RULES["/gpupool.v1.Scheduler/Allocate"]


def test_a_service_is_confined_to_its_tenant() -> None:
    assert tenant_scope(TEAM_A) == "team-a"
    assert tenant_scope(ALICE) is None and tenant_scope(VIEWER) is None
    require_tenant(TEAM_A, "team-a", "x")
    require_tenant(ALICE, "team-b", "x")
    with pytest.raises(PermissionDenied, match="tenant 'team-b'"):
        require_tenant(TEAM_A, "team-b", "allocation al-1")
    with pytest.raises(PermissionDenied):
        require_tenant(AGENT, "team-a", "allocation al-1")


def test_an_agent_is_confined_to_its_node() -> None:
    require_node(AGENT, "h100-0", "hello")
    require_node(ALICE, "anything", "hello")
    with pytest.raises(PermissionDenied, match="its own node"):
        require_node(AGENT, "h100-1", "hello")
    require_on_node(AGENT, ["h100-1", "h100-0"], "allocation")
    with pytest.raises(PermissionDenied):
        require_on_node(AGENT, ["h100-1"], "allocation")


def test_critical_is_not_granted_by_default() -> None:
    granted = default_granted_classes()
    assert "critical" not in granted and {"high", "normal", "batch"} <= granted
    require_priority_class(TEAM_A, "normal", granted)
    require_priority_class(ALICE, "critical", granted)
    with pytest.raises(PermissionDenied, match="priority-classes team-a"):
        require_priority_class(TEAM_A, "critical", granted)


def test_callers_describe_themselves_for_history() -> None:
    assert ALICE.describe() == "admin alice"
    assert AGENT.describe() == "agent of node h100-0"
    assert TEAM_A.describe() == "service svc of tenant team-a"
