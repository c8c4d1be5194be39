"""gpupool cost end to end: allocations on a manual clock, the Cost service over
real gRPC against real PostgreSQL, tenant scoping, a deployment's tokens, and
the CLI (gpupool cost, gpupool plan). Prices: deploy/prices.yaml (H100-80GB
$2.99 on-demand, $1.50 spot)."""

from __future__ import annotations

import json
from datetime import timedelta

import grpc
import pytest
from click.testing import CliRunner
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import create_engine, text

from gpupool.v1 import (
    cost_pb2,
    cost_pb2_grpc,
    deployments_pb2,
    deployments_pb2_grpc,
    scheduler_pb2,
    types_pb2,
)
from scheduler.app import SchedulerApp
from scheduler.cli.main import cli
from scheduler.domain.callers import SYSTEM, Role
from scheduler.domain.clock import ManualClock
from scheduler.fleetfile import parse_fleet
from scheduler.services.agents import WorkerReport
from scheduler.simfleet import register_request
from scheduler.store.deployments import EngineSample
from tests.integration.conftest import Client

S = types_pb2
SPOT_H100 = parse_fleet(
    {
        "nodes": [
            {
                "name": "h100-spot",
                "labels": {"spot": "true"},
                "gpus": {"model": "H100-80GB", "count": 8},
            }
        ]
    }
)[0]


@pytest.fixture(autouse=True)
def _no_deployments(clean_database: str) -> None:
    """tests/conftest.py clears the core tables; the deployments' are issue 13's."""
    engine = create_engine(clean_database)
    with engine.begin() as conn:
        conn.execute(
            text("TRUNCATE replica_metrics, replicas, deployment_events, deployments CASCADE")
        )
    engine.dispose()


def _allocate(
    client: Client, tenant: str, request_id: str, workload: S.WorkloadClass, priority: str
) -> S.Allocation:
    request = scheduler_pb2.AllocateRequest(
        tenant=tenant,
        request_id=request_id,
        whole=S.WholeGpus(count=4),
        gpu_models=["H100-80GB"],
        workload_class=workload,
        priority_class=priority,
    )
    return client.scheduler.Allocate(request).allocation


def _cost(client: Client, **fields: object) -> cost_pb2.GetCostResponse:
    stub = cost_pb2_grpc.CostStub(client.channel)
    return stub.GetCost(cost_pb2.GetCostRequest(**fields))  # type: ignore[arg-type]


def _ts(clock: ManualClock, seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(clock.now() + timedelta(seconds=seconds))
    return ts


def test_gpu_hours_and_money_per_tenant_on_demand_and_spot(
    app: SchedulerApp, fleet_client: Client, clock: ManualClock
) -> None:
    fleet_client.agents.RegisterNode(register_request(SPOT_H100))
    chat = _allocate(fleet_client, "chat", "c1", S.WORKLOAD_CLASS_LATENCY_CRITICAL, "high")
    batch = _allocate(fleet_client, "lab", "b1", S.WORKLOAD_CLASS_BATCH, "batch")
    assert chat.bindings[0].node != "h100-spot" and batch.bindings[0].node == "h100-spot"
    start = clock.now()
    clock.advance(3600)
    fleet_client.scheduler.Release(scheduler_pb2.ReleaseRequest(allocation_id=chat.id))
    clock.advance(1800)

    report = _cost(fleet_client)
    tenants = {t.tenant: t for t in report.tenants}
    # chat: 4 GPUs × 1 h × $2.99 = $11.96; lab: 4 GPUs × 1.5 h × $1.50 (spot) = $9.00.
    assert tenants["chat"].gpu_hours == pytest.approx(4.0)
    assert tenants["chat"].cost == pytest.approx(11.96)
    assert tenants["lab"].gpu_hours == pytest.approx(6.0)
    assert tenants["lab"].cost == pytest.approx(9.0)
    assert report.cost == pytest.approx(20.96) and report.currency == "USD"
    spot = next(x for x in report.lines if x.tenant == "lab")
    assert spot.spot and spot.price_per_hour == pytest.approx(1.5)

    # The last 45 minutes: 15 of them before chat's release (4 × 0.25 h), all of lab's.
    since = Timestamp()
    since.FromDatetime(clock.now() - timedelta(minutes=45))
    windowed = {t.tenant: t for t in _cost(fleet_client, since=since).tenants}
    assert windowed["chat"].gpu_hours == pytest.approx(1.0)
    assert windowed["lab"].gpu_hours == pytest.approx(3.0)
    since.FromDatetime(clock.now() - timedelta(minutes=30))
    assert [t.tenant for t in _cost(fleet_client, since=since).tenants] == ["lab"]
    first_half_hour = Timestamp()
    first_half_hour.FromDatetime(start + timedelta(minutes=30))
    early = {t.tenant: t for t in _cost(fleet_client, until=first_half_hour).tenants}
    assert early["chat"].gpu_hours == pytest.approx(2.0)


def test_a_service_sees_only_its_tenant(
    app: SchedulerApp, fleet_client: Client, clock: ManualClock
) -> None:
    _allocate(fleet_client, "chat", "c1", S.WORKLOAD_CLASS_LATENCY_CRITICAL, "high")
    _allocate(fleet_client, "lab", "b1", S.WORKLOAD_CLASS_BATCH, "batch")
    clock.advance(600)
    service = Client.with_token(app, Role.SERVICE, "chat")
    try:
        assert [t.tenant for t in _cost(service).tenants] == ["chat"]
        with pytest.raises(grpc.RpcError) as info:
            _cost(service, tenant="lab")
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        service.close()


def test_bad_windows_and_unknown_deployments(fleet_client: Client, clock: ManualClock) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _cost(fleet_client, since=_ts(clock, -60), until=_ts(clock, -120))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "since" in (info.value.details() or "")
    with pytest.raises(grpc.RpcError) as info:
        _cost(fleet_client, tenant="chat", deployment="nope")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        _cost(fleet_client, deployment="nope")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_deployment_costs_per_million_tokens(
    app: SchedulerApp, fleet_client: Client, clock: ManualClock
) -> None:
    stub = deployments_pb2_grpc.DeploymentsStub(fleet_client.channel)
    spec = deployments_pb2.DeploymentSpec(
        name="chat",
        tenant="team-a",
        model="llama-3.1-8b",
        engine="sim-engine",
        min_replicas=1,
        max_replicas=2,
        variants=[
            deployments_pb2.DeploymentVariant(name="fp16", dtype="fp16", gpu_models=["H100-80GB"])
        ],
    )
    stub.Create(deployments_pb2.CreateDeploymentRequest(spec=spec))
    app.deployment_loop.run_once()
    deployment = stub.Get(deployments_pb2.GetDeploymentRequest(name="chat", tenant="team-a"))
    (replica,) = deployment.deployment.replicas
    assert replica.gpu_count == 1 and replica.gpu_model == "H100-80GB"
    allocation = app.allocations.get(SYSTEM, replica.allocation_id)
    for binding in allocation.bindings:
        ready = WorkerReport(replica.allocation_id, binding["rank"], binding["node"], "ready")
        app.workers.report(binding["node"], [ready])
    clock.advance(7200)
    # 2 h of one H100 = $5.98, for 3,000,000 prompt and 1,000,000 generated tokens.
    sample = EngineSample(replica.allocation_id, 0.5, 4, 0, 3_000_000, 1_000_000)
    app.deployments.record_metrics(replica.node, [sample])

    report = _cost(fleet_client, tenant="team-a", deployment="chat")
    (line,) = report.lines
    assert line.deployment == "chat" and line.gpu_hours == pytest.approx(2.0)
    (per_deployment,) = report.deployments
    assert per_deployment.prompt_tokens == 3_000_000
    assert per_deployment.generation_tokens == 1_000_000
    assert per_deployment.lifetime_cost == pytest.approx(5.98)
    # $5.98 ÷ 4,000,000 tokens × 10^6 = $1.495; per generated token: $5.98.
    assert per_deployment.cost_per_million_tokens == pytest.approx(1.495)
    assert per_deployment.cost_per_million_generated_tokens == pytest.approx(5.98)

    result = CliRunner().invoke(cli, [*fleet_client.cli_args(), "cost", "--tenant", "team-a"])
    assert result.exit_code == 0, result.output
    assert "5.98 USD" in result.output and "1.4950" in result.output
    as_json = CliRunner().invoke(
        cli, [*fleet_client.cli_args(), "-o", "json", "cost", "--since", "2026-01-01T00:00"]
    )
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output)["deployments"][0]["deployment"] == "chat"


def test_gpupool_plan_prints_the_trade_off() -> None:
    args = ["plan", "--model", "llama-3.1-70b", "--gpu", "H100-80GB", "--gpus", "16"]
    result = CliRunner().invoke(cli, [*args, "--ttft-slo", "2s"])
    assert result.exit_code == 0, result.output
    assert "Assumptions" in result.output and "weights 141 GB" in result.output
    as_json = CliRunner().invoke(cli, ["-o", "json", *args, "--dtype", "fp16"])
    rows = json.loads(as_json.output)["rows"]
    assert [r["tp"] for r in rows] == [1, 2, 4, 8] and not rows[0]["fits"]
    bad = CliRunner().invoke(
        cli, ["plan", "--model", "llama-9", "--gpu", "H100-80GB", "--gpus", "8"]
    )
    assert bad.exit_code == 1 and "not in the LLM catalogue" in bad.output
