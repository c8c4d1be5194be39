"""Every trust rule over real TLS on loopback: who may call, on whose behalf."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import pytest

from gpupool.v1 import admin_pb2, agents_pb2, scheduler_pb2, types_pb2
from scheduler.app import SchedulerApp
from scheduler.domain.callers import Role
from scheduler.domain.clock import ManualClock
from scheduler.fleetfile import SimulatedNode
from scheduler.security.channels import ClientCredentials
from scheduler.simfleet import register_request
from tests.integration.conftest import Client
from tests.integration.test_allocate import PLACED, allocate
from tests.pki import SessionPki, scheduler_settings

CODE = grpc.StatusCode


def _code(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


def _details(call: Callable[[], object]) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return str(info.value.details())


@pytest.fixture
def fleet_app(app: SchedulerApp, fleet_client: Client) -> SchedulerApp:
    """A scheduler that knows the mixed fleet (registered by an admin)."""
    return app


@pytest.fixture
def tenant_a(fleet_app: SchedulerApp) -> Iterator[Client]:
    c = Client.with_token(fleet_app, Role.SERVICE, "team-a")
    yield c
    c.close()


@pytest.fixture
def tenant_b(fleet_app: SchedulerApp) -> Iterator[Client]:
    c = Client.with_token(fleet_app, Role.SERVICE, "team-b")
    yield c
    c.close()


def _whole(count: int = 1, **kwargs: object) -> dict[str, object]:
    return {"whole": types_pb2.WholeGpus(count=count), "gpu_models": ["H100-80GB"], **kwargs}


def test_a_default_server_refuses_plaintext(app: SchedulerApp) -> None:
    plain = Client(app.address, ClientCredentials(insecure=True))
    try:
        assert _code(lambda: plain.admin.ListNodes(admin_pb2.ListNodesRequest(), timeout=5)) == (
            CODE.UNAVAILABLE
        )
    finally:
        plain.close()


def test_no_or_bad_credentials_are_unauthenticated(app: SchedulerApp, pki: SessionPki) -> None:
    anonymous = Client(app.address, pki.anonymous())
    forged = Client(app.address, ClientCredentials(ca_pem=pki.ca.cert_pem, token="gpp_" + "0" * 77))
    try:
        request = admin_pb2.ListNodesRequest()
        assert _code(lambda: anonymous.admin.ListNodes(request)) == CODE.UNAUTHENTICATED
        assert "needs credentials" in _details(lambda: anonymous.admin.ListNodes(request))
        assert _code(lambda: forged.admin.ListNodes(request)) == CODE.UNAUTHENTICATED
    finally:
        anonymous.close()
        forged.close()


def test_a_tenant_cannot_touch_another_tenants_allocation(
    tenant_a: Client, tenant_b: Client, fleet_app: SchedulerApp
) -> None:
    mine = allocate(tenant_b, "b-1", tenant="team-b", **_whole())
    assert mine.state == PLACED
    get = scheduler_pb2.GetAllocationRequest(allocation_id=mine.id)
    release = scheduler_pb2.ReleaseRequest(allocation_id=mine.id)
    ack = scheduler_pb2.AckPreemptionRequest(allocation_id=mine.id, checkpoint_uri="s3://evil/x")
    assert _code(lambda: tenant_a.scheduler.GetAllocation(get)) == CODE.PERMISSION_DENIED
    assert "team-b" in _details(lambda: tenant_a.scheduler.Release(release))
    assert _code(lambda: tenant_a.scheduler.Release(release)) == CODE.PERMISSION_DENIED
    assert _code(lambda: tenant_a.scheduler.AckPreemption(ack)) == CODE.PERMISSION_DENIED
    # Asking on another tenant's behalf, or listing its work, is refused too.
    foreign = scheduler_pb2.AllocateRequest(request_id="a-1", tenant="team-b", **_whole())  # type: ignore[arg-type]
    assert _code(lambda: tenant_a.scheduler.Allocate(foreign)) == CODE.PERMISSION_DENIED
    listing = scheduler_pb2.ListAllocationsRequest(tenant="team-b")
    assert _code(lambda: tenant_a.scheduler.ListAllocations(listing)) == CODE.PERMISSION_DENIED
    # Its own list shows only its own work; the allocation is untouched.
    allocate(tenant_a, "a-2", tenant="", **_whole())
    own = tenant_a.scheduler.ListAllocations(scheduler_pb2.ListAllocationsRequest()).allocations
    assert {a.tenant for a in own} == {"team-a"}
    assert tenant_b.scheduler.GetAllocation(get).allocation.state == PLACED


def test_history_names_who_released(tenant_b: Client, fleet_client: Client) -> None:
    mine = allocate(tenant_b, "b-2", tenant="team-b", **_whole())
    fleet_client.admin.ReleaseAllocation(scheduler_pb2.ReleaseRequest(allocation_id=mine.id))
    got = tenant_b.scheduler.GetAllocation(
        scheduler_pb2.GetAllocationRequest(allocation_id=mine.id)
    )
    assert "released by admin test-admin" in got.allocation.message


def test_a_viewer_reads_everything_and_changes_nothing(fleet_app: SchedulerApp) -> None:
    viewer = Client.with_token(fleet_app, Role.VIEWER)
    try:
        assert viewer.admin.ListNodes(admin_pb2.ListNodesRequest()).nodes
        drain = admin_pb2.NodeActionRequest(name="h100-sxm-0")
        assert _code(lambda: viewer.admin.DrainNode(drain)) == CODE.PERMISSION_DENIED
        assert "needs role admin" in _details(lambda: viewer.admin.DrainNode(drain))
        quota = admin_pb2.SetTenantQuotaRequest(name="team-a", quota_units=1e6)
        assert _code(lambda: viewer.admin.SetTenantQuota(quota)) == CODE.PERMISSION_DENIED
        work = scheduler_pb2.AllocateRequest(request_id="v", tenant="team-a", **_whole())  # type: ignore[arg-type]
        assert _code(lambda: viewer.scheduler.Allocate(work)) == CODE.PERMISSION_DENIED
    finally:
        viewer.close()


def test_a_service_cannot_take_admin_calls(tenant_a: Client) -> None:
    for call in (
        lambda: tenant_a.admin.CordonNode(admin_pb2.NodeActionRequest(name="h100-sxm-0")),
        lambda: tenant_a.admin.SetTenantQuota(admin_pb2.SetTenantQuotaRequest(name="team-a")),
        lambda: tenant_a.admin.Preempt(admin_pb2.PreemptRequest(allocation_id="x")),
        lambda: tenant_a.admin.CreateToken(admin_pb2.CreateTokenRequest(name="mine")),
        lambda: tenant_a.agents.RegisterNode(agents_pb2.RegisterNodeRequest(name="fake")),
    ):
        assert _code(call) == CODE.PERMISSION_DENIED


def test_critical_needs_a_grant(tenant_a: Client, fleet_client: Client) -> None:
    critical = _whole(priority_class="critical")
    refused = _details(lambda: allocate(tenant_a, "c-1", tenant="team-a", **critical))
    assert "may not use priority class 'critical'" in refused
    assert allocate(tenant_a, "n-1", tenant="team-a", **_whole(priority_class="high")).id
    grant = admin_pb2.SetTenantPriorityClassesRequest(
        name="team-a", priority_classes=["critical", "high", "normal", "batch"]
    )
    tenant = fleet_client.admin.SetTenantPriorityClasses(grant).tenant
    assert "critical" in tenant.priority_classes
    assert allocate(tenant_a, "c-2", tenant="team-a", **critical).state == PLACED
    reset = admin_pb2.SetTenantPriorityClassesRequest(name="team-a", reset=True)
    assert (
        "critical" not in fleet_client.admin.SetTenantPriorityClasses(reset).tenant.priority_classes
    )


def test_revoked_and_expired_tokens_are_refused(
    fleet_app: SchedulerApp, fleet_client: Client, clock: ManualClock, pki: SessionPki
) -> None:
    created = fleet_client.admin.CreateToken(
        admin_pb2.CreateTokenRequest(name="short", role=admin_pb2.TOKEN_ROLE_VIEWER, ttl_seconds=60)
    )
    viewer = Client(
        fleet_app.address, ClientCredentials(ca_pem=pki.ca.cert_pem, token=created.secret)
    )
    other = fleet_client.admin.CreateToken(
        admin_pb2.CreateTokenRequest(name="other", role=admin_pb2.TOKEN_ROLE_VIEWER)
    )
    revoked = Client(
        fleet_app.address, ClientCredentials(ca_pem=pki.ca.cert_pem, token=other.secret)
    )
    try:
        request = admin_pb2.ListNodesRequest()
        assert viewer.admin.ListNodes(request).nodes and revoked.admin.ListNodes(request).nodes
        fleet_client.admin.RevokeToken(admin_pb2.RevokeTokenRequest(id=other.token.id))
        assert "revoked" in _details(lambda: revoked.admin.ListNodes(request))
        clock.advance(61)
        assert "expired" in _details(lambda: viewer.admin.ListNodes(request))
        assert _code(lambda: viewer.admin.ListNodes(request)) == CODE.UNAUTHENTICATED
        listed = fleet_client.admin.ListTokens(admin_pb2.ListTokensRequest()).tokens
        assert other.token.id not in {t.id for t in listed}
        assert not any(created.secret in str(t) for t in listed), "secrets are never listed"
    finally:
        viewer.close()
        revoked.close()


@pytest.fixture
def agent_a(fleet_app: SchedulerApp) -> Iterator[Client]:
    c = Client.as_agent(fleet_app, "h100-sxm-0")
    yield c
    c.close()


def test_an_agent_speaks_only_for_its_node(
    agent_a: Client, mixed_fleet: list[SimulatedNode], fleet_client: Client
) -> None:
    nodes = {n.name: n for n in mixed_fleet}
    assert agent_a.agents.RegisterNode(register_request(nodes["h100-sxm-0"])).node.name
    other = register_request(nodes["h100-sxm-1"])
    assert "speaks only for its own node" in _details(lambda: agent_a.agents.RegisterNode(other))
    beat = agents_pb2.HeartbeatRequest(node="h100-sxm-1")
    assert _code(lambda: agent_a.agents.Heartbeat(beat)) == CODE.PERMISSION_DENIED
    assert agent_a.agents.Heartbeat(agents_pb2.HeartbeatRequest(node="h100-sxm-0"))

    hello = agents_pb2.AgentMessage(hello=agents_pb2.AgentHello(node=other))
    stream = agent_a.agents.Connect(iter([hello]), timeout=10)
    assert _code(lambda: next(iter(stream))) == CODE.PERMISSION_DENIED

    # Work placed on another node: the agent may neither ack nor report for it.
    elsewhere = allocate(
        fleet_client, "on-b", whole=types_pb2.WholeGpus(count=8), gpu_models=["H100-80GB"]
    )
    if elsewhere.bindings[0].node == "h100-sxm-0":
        elsewhere = allocate(
            fleet_client, "on-b2", whole=types_pb2.WholeGpus(count=8), gpu_models=["H100-80GB"]
        )
    assert elsewhere.bindings[0].node != "h100-sxm-0"
    ack = scheduler_pb2.AckPreemptionRequest(allocation_id=elsewhere.id, checkpoint_uri="s3://x")
    assert _code(lambda: agent_a.scheduler.AckPreemption(ack)) == CODE.PERMISSION_DENIED
    report = scheduler_pb2.ReportCheckpointRequest(allocation_id=elsewhere.id, checkpoint_uri="x")
    assert _code(lambda: agent_a.scheduler.ReportCheckpoint(report)) == CODE.PERMISSION_DENIED
    # An agent is no service: it may not allocate or release.
    release = scheduler_pb2.ReleaseRequest(allocation_id=elsewhere.id)
    assert _code(lambda: agent_a.scheduler.Release(release)) == CODE.PERMISSION_DENIED


def test_the_agent_port_demands_a_client_certificate(
    fleet_app: SchedulerApp, pki: SessionPki
) -> None:
    token_only = Client(fleet_app.agent_address, pki.token(fleet_app, Role.ADMIN))
    admin_cert = Client(fleet_app.agent_address, pki.admin_certificate("ops"))
    try:
        request = admin_pb2.ListNodesRequest()
        assert _code(lambda: token_only.admin.ListNodes(request, timeout=5)) == CODE.UNAVAILABLE
        assert admin_cert.admin.ListNodes(request).nodes, "an admin certificate is an admin"
    finally:
        token_only.close()
        admin_cert.close()


def test_state_changes_are_audited_with_actor_and_outcome(
    fleet_client: Client, tenant_a: Client, fleet_app: SchedulerApp
) -> None:
    fleet_client.admin.CordonNode(admin_pb2.NodeActionRequest(name="h100-sxm-0"))
    _code(lambda: tenant_a.admin.DrainNode(admin_pb2.NodeActionRequest(name="h100-sxm-1")))
    events = fleet_client.admin.ListAuditEvents(admin_pb2.ListAuditEventsRequest()).events
    cordon = next(e for e in events if e.method == "Admin/CordonNode")
    assert (cordon.actor, cordon.target, cordon.code) == ("admin test-admin", "h100-sxm-0", "OK")
    assert cordon.peer.startswith("ipv4:127.0.0.1")
    denied = next(e for e in events if e.method == "Admin/DrainNode")
    assert denied.code == "PERMISSION_DENIED" and denied.tenant == "team-a"
    by_node = fleet_client.admin.ListAuditEvents(
        admin_pb2.ListAuditEventsRequest(node="h100-sxm-1")
    )
    assert [e.method for e in by_node.events] == ["Admin/DrainNode", "Agents/RegisterNode"]
    assert by_node.events[1].actor == "admin test-admin", "the fleet was registered by an admin"


def test_an_insecure_server_is_plaintext_and_open(clean_database: str, clock: ManualClock) -> None:
    app = SchedulerApp(
        scheduler_settings(
            clean_database, insecure=True, tls_cert=None, tls_key=None, client_ca=None
        ),
        clock=clock,
    )
    app.start()
    plain = Client(app.address, ClientCredentials(insecure=True))
    try:
        assert plain.admin.ListNodes(admin_pb2.ListNodesRequest()) is not None
    finally:
        plain.close()
        app.stop(grace=0.5)
