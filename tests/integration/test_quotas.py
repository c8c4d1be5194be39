"""Tenant quotas: borrowing idle capacity, reclaim when the owner returns,
fair share between borrowers."""

from __future__ import annotations

import grpc
import pytest

from gpupool.v1 import admin_pb2, scheduler_pb2, types_pb2
from scheduler.app import SchedulerApp
from scheduler.domain.clock import ManualClock
from tests.integration.conftest import Client
from tests.integration.test_concurrency import assert_consistent

S = types_pb2


def _allocate(client: Client, tenant: str, request_id: str, model: str, count: int) -> S.Allocation:
    request = scheduler_pb2.AllocateRequest(
        tenant=tenant,
        request_id=request_id,
        whole=S.WholeGpus(count=count),
        gpu_models=[model],
        priority_class="batch",
    )
    return client.scheduler.Allocate(request).allocation


def _get(client: Client, allocation: S.Allocation) -> S.Allocation:
    request = scheduler_pb2.GetAllocationRequest(allocation_id=allocation.id)
    return client.scheduler.GetAllocation(request).allocation


def _tenants(client: Client) -> dict[str, admin_pb2.Tenant]:
    return {t.name: t for t in client.admin.ListTenants(admin_pb2.ListTenantsRequest()).tenants}


def test_borrow_idle_capacity_then_reclaim_when_the_owner_returns(
    app: SchedulerApp, fleet_client: Client, clock: ManualClock, clean_database: str
) -> None:
    fleet_client.admin.SetTenantQuota(admin_pb2.SetTenantQuotaRequest(name="prod", quota_units=10))
    borrowed = [_allocate(fleet_client, "research", f"r{i}", "H200", 2) for i in range(4)]
    assert all(a.state == S.ALLOCATION_STATE_PLACED for a in borrowed), "idle capacity is lent"
    shown = _tenants(fleet_client)["research"]
    assert shown.quota_units == 0 and round(shown.borrowed_units, 2) == 8 * 2.35

    clock.advance(600)
    wanted = _allocate(fleet_client, "prod", "p1", "H200", 4)
    assert wanted.state == S.ALLOCATION_STATE_PENDING
    assert "preempting 2" in wanted.message, "same priority, but prod is below its guarantee"
    victims = [a for a in borrowed if _get(fleet_client, a).state == S.ALLOCATION_STATE_PREEMPTING]
    assert len(victims) == 2
    for victim in victims:
        fleet_client.scheduler.AckPreemption(
            scheduler_pb2.AckPreemptionRequest(
                allocation_id=victim.id, checkpoint_uri=f"s3://{victim.id}"
            )
        )
    assert _get(fleet_client, wanted).state == S.ALLOCATION_STATE_PLACED
    assert _tenants(fleet_client)["prod"].used_units > 0
    assert_consistent(clean_database)


def test_entitled_tenant_does_not_reclaim_from_tenants_within_quota(
    fleet_client: Client, clock: ManualClock
) -> None:
    fleet_client.admin.SetTenantQuota(admin_pb2.SetTenantQuotaRequest(name="prod", quota_units=10))
    fleet_client.admin.SetTenantQuota(
        admin_pb2.SetTenantQuotaRequest(name="search", quota_units=100)
    )
    held = _allocate(fleet_client, "search", "s", "H200", 8)
    clock.advance(600)
    wanted = _allocate(fleet_client, "prod", "p", "H200", 4)
    assert wanted.state == S.ALLOCATION_STATE_PENDING
    assert _get(fleet_client, held).state == S.ALLOCATION_STATE_PLACED


def test_freed_capacity_goes_to_the_borrower_with_the_smaller_share(fleet_client: Client) -> None:
    fleet_client.admin.SetTenantQuota(
        admin_pb2.SetTenantQuotaRequest(name="heavy", quota_units=0, weight=1)
    )
    fleet_client.admin.SetTenantQuota(
        admin_pb2.SetTenantQuotaRequest(name="light", quota_units=0, weight=2)
    )
    _allocate(fleet_client, "heavy", "h1", "B200", 2)
    _allocate(fleet_client, "heavy", "h2", "B200", 2)
    _allocate(fleet_client, "light", "l1", "B200", 2)
    blocker = _allocate(fleet_client, "other", "o1", "B200", 2)
    heavy_waits = _allocate(fleet_client, "heavy", "h3", "B200", 2)  # arrives first
    light_waits = _allocate(fleet_client, "light", "l2", "B200", 2)
    assert heavy_waits.state == light_waits.state == S.ALLOCATION_STATE_PENDING
    fleet_client.scheduler.Release(scheduler_pb2.ReleaseRequest(allocation_id=blocker.id))
    assert _get(fleet_client, light_waits).state == S.ALLOCATION_STATE_PLACED
    assert _get(fleet_client, heavy_waits).state == S.ALLOCATION_STATE_PENDING


def test_bad_quota_is_invalid_argument(client: Client) -> None:
    for request in (
        admin_pb2.SetTenantQuotaRequest(name="", quota_units=1),
        admin_pb2.SetTenantQuotaRequest(name="t", quota_units=-1),
        admin_pb2.SetTenantQuotaRequest(name="t", quota_units=1, weight=-2),
    ):
        with pytest.raises(grpc.RpcError) as info:
            client.admin.SetTenantQuota(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
