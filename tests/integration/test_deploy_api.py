"""The Deployments service over real gRPC against real PostgreSQL, and the
reconcile loop driven tick by tick on a manual clock (agents' worker reports
and engine metrics fed to the services as the agent stream would)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from sqlalchemy import create_engine, text

from gpupool.v1 import admin_pb2, deployments_pb2_grpc, scheduler_pb2, types_pb2
from gpupool.v1 import deployments_pb2 as pb
from scheduler.app import SchedulerApp
from scheduler.domain.callers import SYSTEM, Role
from scheduler.domain.clock import ManualClock
from scheduler.services.agents import WorkerReport
from scheduler.store.deployments import EngineSample
from tests.integration.conftest import Client

DEPLOYMENT_TABLES = "replica_metrics, replicas, deployment_events, deployments"


def clear_deployments(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {DEPLOYMENT_TABLES} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(autouse=True)
def _no_deployments(clean_database: str) -> Iterator[None]:
    """tests/conftest.py clears the core tables; these are issue 13's (cleared
    after each test too, so tests of other modules find none)."""
    clear_deployments(clean_database)
    yield
    clear_deployments(clean_database)


@pytest.fixture
def stub(fleet_client: Client) -> deployments_pb2_grpc.DeploymentsStub:
    return deployments_pb2_grpc.DeploymentsStub(fleet_client.channel)


def _spec(**fields: object) -> pb.DeploymentSpec:
    values: dict[str, object] = {
        "name": "chat",
        "tenant": "team-a",
        "model": "llama-3.1-8b",
        "engine": "sim-engine",
        "min_replicas": 1,
        "max_replicas": 4,
        "variants": [pb.DeploymentVariant(name="fp16", dtype="fp16", gpu_models=["H100-80GB"])],
    }
    values.update(fields)
    return pb.DeploymentSpec(**values)  # type: ignore[arg-type]


def _create(stub: deployments_pb2_grpc.DeploymentsStub, **fields: object) -> pb.Deployment:
    return stub.Create(pb.CreateDeploymentRequest(spec=_spec(**fields))).deployment


def _refused(
    stub: deployments_pb2_grpc.DeploymentsStub, code: grpc.StatusCode, **fields: object
) -> str:
    with pytest.raises(grpc.RpcError) as info:
        _create(stub, **fields)
    assert info.value.code() == code, info.value.details()
    return info.value.details() or ""


def test_create_get_list_with_defaults(stub: deployments_pb2_grpc.DeploymentsStub) -> None:
    created = _create(stub, standby_replicas=1, cron_minimums={"0 9 * * 1-5": 3})
    assert created.state == pb.DEPLOYMENT_STATE_ACTIVE
    spec = created.spec
    assert spec.target_kv_cache_usage == pytest.approx(0.70)
    assert (spec.scale_up.stabilization_s, spec.scale_up.max_step, spec.scale_up.period_s) == (
        60,
        2,
        120,
    )
    assert (spec.scale_down.stabilization_s, spec.scale_down.max_step) == (300, 1)
    got = stub.Get(pb.GetDeploymentRequest(name="chat", tenant="team-a")).deployment
    assert got.id == created.id and got.spec.cron_minimums["0 9 * * 1-5"] == 3
    listed = stub.List(pb.ListDeploymentsRequest()).deployments
    assert [d.spec.name for d in listed] == ["chat"]
    _refused(stub, grpc.StatusCode.ALREADY_EXISTS)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"model": "no-such-model"}, "model 'no-such-model' is not in the LLM catalogue"),
        ({"engine": "nope"}, "engine: unknown worker template 'nope'"),
        ({"engine": "torchrun"}, "serves no HTTP port"),
        ({"min_replicas": 5, "max_replicas": 2}, "min_replicas 5 is greater than max_replicas 2"),
        ({"target_kv_cache_usage": 1.5}, "target_kv_cache_usage must be in (0, 1]"),
        ({"cron_minimums": {"not a cron": 2}}, "cron_minimums: 'not a cron' is not a cron"),
        ({"name": "Bad_Name"}, "name 'Bad_Name'"),
        ({"priority_class": "vip"}, "priority_class: unknown 'vip'"),
        ({"routing": "fastest"}, "routing: unknown policy 'fastest'"),
        ({"engine_args": {"port": "80"}}, "engine_args: port are set per replica"),
        (
            {"variants": [pb.DeploymentVariant(dtype="int4", gpu_models=["A100-41GB"])]},
            "variants[0].gpu_models: unknown GPU model 'A100-41GB'",
        ),
    ],
)
def test_bad_input_is_invalid_argument_naming_the_field(
    stub: deployments_pb2_grpc.DeploymentsStub, fields: dict[str, object], words: str
) -> None:
    assert words in _refused(stub, grpc.StatusCode.INVALID_ARGUMENT, **fields)


def test_a_deployment_no_gpu_can_hold_is_failed_precondition_with_reasons(
    stub: deployments_pb2_grpc.DeploymentsStub,
) -> None:
    # The fleet's A100-40GBs are all in MIG mode; 405B needs more than one H100 node.
    details = _refused(
        stub,
        grpc.StatusCode.FAILED_PRECONDITION,
        model="llama-3.1-405b",
        variants=[
            pb.DeploymentVariant(name="int4", dtype="int4", gpu_models=["A100-40GB"]),
            pb.DeploymentVariant(name="fp16", dtype="fp16", gpu_models=["H100-80GB"], tp=16),
        ],
    )
    assert "variant int4 on A100-40GB: the fleet has no A100-40GB" in details
    assert "tp=16 needs 16 GPUs in one NVLink domain; the largest has 8" in details


def test_services_are_confined_to_their_tenant(app: SchedulerApp, fleet_client: Client) -> None:
    team_b = Client.with_token(app, Role.SERVICE, "team-b")
    viewer = Client.with_token(app, Role.VIEWER)
    try:
        deployments_pb2_grpc.DeploymentsStub(fleet_client.channel).Create(
            pb.CreateDeploymentRequest(spec=_spec())
        )
        b = deployments_pb2_grpc.DeploymentsStub(team_b.channel)
        with pytest.raises(grpc.RpcError) as info:
            b.Get(pb.GetDeploymentRequest(name="chat", tenant="team-a"))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as info:
            b.Get(pb.GetDeploymentRequest(name="chat"))  # its own tenant has none
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert list(b.List(pb.ListDeploymentsRequest()).deployments) == []
        created = b.Create(pb.CreateDeploymentRequest(spec=_spec(tenant=""))).deployment
        assert created.spec.tenant == "team-b"
        v = deployments_pb2_grpc.DeploymentsStub(viewer.channel)
        assert len(v.List(pb.ListDeploymentsRequest()).deployments) == 2
        with pytest.raises(grpc.RpcError) as info:
            v.Pause(pb.DeploymentActionRequest(name="chat", tenant="team-a"))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        team_b.close()
        viewer.close()


# -- the reconcile loop -------------------------------------------------------
def _ready(app: SchedulerApp, deployment: pb.Deployment) -> None:
    """What the replicas' agents would report: every engine rank ready."""
    for replica in deployment.replicas:
        allocation = app.allocations.get(SYSTEM, replica.allocation_id)
        for binding in allocation.bindings:
            report = WorkerReport(replica.allocation_id, binding["rank"], binding["node"], "ready")
            app.workers.report(binding["node"], [report])


def _get(stub: deployments_pb2_grpc.DeploymentsStub) -> pb.Deployment:
    return stub.Get(pb.GetDeploymentRequest(name="chat", tenant="team-a")).deployment


def _states(deployment: pb.Deployment) -> list[str]:
    return sorted(
        pb.ReplicaState.Name(r.state).removeprefix("REPLICA_STATE_").lower()
        for r in deployment.replicas
    )


def _load(app: SchedulerApp, deployment: pb.Deployment, kv: float, running: int = 4) -> None:
    for replica in deployment.replicas:
        sample = EngineSample(replica.allocation_id, kv, running, 0, 100, 200)
        app.deployments.record_metrics(replica.node, [sample])


def test_the_loop_starts_scales_promotes_standby_drains_and_deletes(
    app: SchedulerApp, stub: deployments_pb2_grpc.DeploymentsStub, clock: ManualClock
) -> None:
    _create(stub, min_replicas=1, max_replicas=4, standby_replicas=1)
    loop = app.deployment_loop
    loop.run_once()  # one to serve, one for the pool
    deployment = _get(stub)
    assert _states(deployment) == ["starting", "starting"]
    for replica in deployment.replicas:
        host, port = replica.endpoint.rsplit(":", 1)
        assert host == replica.node and 18000 <= int(port) <= 18999
    assert {r.gpu_model for r in deployment.replicas} == {"H100-80GB"}
    # Spread: both H100 nodes share zone and rack, so the second replica takes the other node.
    assert {r.node for r in deployment.replicas} == {"h100-sxm-0", "h100-sxm-1"}
    _ready(app, deployment)
    loop.run_once()
    deployment = _get(stub)
    assert _states(deployment) == ["ready", "standby"]
    ready = next(r for r in deployment.replicas if r.state == pb.REPLICA_STATE_READY)
    assert ready.endpoint and ready.node and ready.gpu_count == 1 and ready.variant == "fp16"

    # KV use far above target for the whole scale-up window: standby is promoted first.
    for _ in range(8):
        _load(app, _get(stub), 0.95)
        clock.advance(10)
        loop.run_once()
    deployment = _get(stub)
    states = _states(deployment)
    assert states.count("ready") >= 2, states
    history = stub.History(pb.DeploymentHistoryRequest(name="chat", tenant="team-a")).events
    decisions = [e for e in history if e.kind == "decision"]
    assert decisions and any(e.to_replicas > e.from_replicas for e in decisions)
    assert any("promoted" in r.reason for r in deployment.replicas)

    # Idle past the scale-down window: ready replicas drain, then stop or go standby.
    for _ in range(60):
        deployment = _get(stub)
        _ready(app, deployment)
        _load(app, deployment, 0.05, running=0)
        clock.advance(15)
        loop.run_once()
    deployment = _get(stub)
    assert _states(deployment).count("ready") == 1, _states(deployment)

    deleting = stub.Delete(pb.DeploymentActionRequest(name="chat", tenant="team-a")).deployment
    assert deleting.state == pb.DEPLOYMENT_STATE_DELETING
    loop.run_once()  # serving replicas drain first
    assert "draining" in _states(_get(stub))
    for _ in range(3):
        _load(app, _get(stub), 0.0, running=0)
        clock.advance(5)
        loop.run_once()
        if not app.deployments.list_all(SYSTEM, "team-a", False):
            break
    with pytest.raises(grpc.RpcError) as info:
        _get(stub)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    events = stub.History(pb.DeploymentHistoryRequest(name="chat", tenant="team-a")).events
    assert events[-1].kind == "deleted"
    live = app.allocations.list(SYSTEM, "team-a", "", "", 100, "")[0]
    assert all(a.state == "released" for a in live)


def test_advisory_records_and_does_not_act(
    app: SchedulerApp, stub: deployments_pb2_grpc.DeploymentsStub
) -> None:
    _create(stub, advisory=True, min_replicas=2, max_replicas=3)
    for _ in range(3):  # the same advice is recorded once
        app.deployment_loop.run_once()
    assert list(_get(stub).replicas) == []
    events = stub.History(pb.DeploymentHistoryRequest(name="chat", tenant="team-a")).events
    assert [e.kind for e in events] == ["created", "advisory"]
    assert events[-1].to_replicas == 2
    listed = app.allocations.list(SYSTEM, "team-a", "", "", 100, "")[0]
    assert listed == []


def test_a_lost_replica_is_replaced(
    app: SchedulerApp, stub: deployments_pb2_grpc.DeploymentsStub
) -> None:
    _create(stub)
    app.deployment_loop.run_once()
    first = _get(stub).replicas[0]
    app.allocations.release(SYSTEM, first.allocation_id)  # e.g. its node failed for good
    app.deployment_loop.run_once()
    replicas = _get(stub).replicas
    assert [r.id for r in replicas] != [first.id] and len(replicas) == 1
    events = stub.History(pb.DeploymentHistoryRequest(name="chat", tenant="team-a")).events
    assert any(e.kind == "replica" and f"replica {first.id} lost" in e.message for e in events)


def test_watch_replicas_sends_the_snapshot_then_changes(
    app: SchedulerApp, stub: deployments_pb2_grpc.DeploymentsStub
) -> None:
    created = _create(stub, routing="prefix")
    assert created.spec.routing == "prefix"  # kept with the spec
    app.deployment_loop.run_once()
    call = stub.WatchReplicas(pb.WatchReplicasRequest(deployment="chat"), timeout=20)
    stream = iter(call)
    first = next(stream)
    assert first.replica.state == pb.REPLICA_STATE_STARTING
    assert first.replica.model == "llama-3.1-8b"
    assert first.replica.routing == "prefix"  # what the gateway routes it by
    assert next(stream).synced
    _ready(app, _get(stub))
    app.deployment_loop.run_once()
    update = next(stream)
    assert update.replica.state == pb.REPLICA_STATE_READY and update.replica.endpoint
    call.cancel()  # type: ignore[no-untyped-call]


def test_scale_pause_resume(app: SchedulerApp, stub: deployments_pb2_grpc.DeploymentsStub) -> None:
    _create(stub)
    scaled = stub.Scale(
        pb.ScaleDeploymentRequest(name="chat", tenant="team-a", replicas=3)
    ).deployment
    assert scaled.manual
    app.deployment_loop.run_once()
    assert len(_get(stub).replicas) == 3
    with pytest.raises(grpc.RpcError) as info:
        stub.Scale(pb.ScaleDeploymentRequest(name="chat", tenant="team-a", min_replicas=9))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    paused = stub.Pause(pb.DeploymentActionRequest(name="chat", tenant="team-a")).deployment
    assert paused.paused
    stub.Scale(pb.ScaleDeploymentRequest(name="chat", tenant="team-a", replicas=1))
    app.deployment_loop.run_once()
    assert len(_get(stub).replicas) == 3  # paused: nothing acts
    stub.Resume(pb.DeploymentActionRequest(name="chat", tenant="team-a"))
    auto = stub.Scale(pb.ScaleDeploymentRequest(name="chat", tenant="team-a", autoscale=True))
    assert not auto.deployment.manual
    kinds = [
        e.kind
        for e in stub.History(pb.DeploymentHistoryRequest(name="chat", tenant="team-a")).events
    ]
    assert {"scaled", "paused", "resumed"} <= set(kinds)
    # Replica allocations carry the deployment's labels and worker.
    allocation = app.allocations.get(SYSTEM, _get(stub).replicas[0].allocation_id)
    assert allocation.labels["gpupool.io/deployment"] == "chat"


def test_a_spot_interruption_starts_the_replacement_before_the_replica_is_lost(
    app: SchedulerApp, fleet_client: Client, stub: deployments_pb2_grpc.DeploymentsStub
) -> None:
    _create(stub, min_replicas=1, max_replicas=2)
    app.deployment_loop.run_once()
    _ready(app, _get(stub))
    app.deployment_loop.run_once()
    first = _get(stub).replicas[0]
    assert first.state == pb.REPLICA_STATE_READY
    fleet_client.admin.InterruptNode(
        admin_pb2.InterruptNodeRequest(name=first.node, in_seconds=120)
    )
    app.deployment_loop.run_once()
    replicas = {r.id: r for r in _get(stub).replicas}
    assert replicas[first.id].state == pb.REPLICA_STATE_DRAINING
    assert "spot interruption" in replicas[first.id].reason
    replacement = [r for r in replicas.values() if r.id != first.id]
    assert len(replacement) == 1 and replacement[0].node != first.node


def test_a_latency_critical_deployment_preempts_batch_work_for_its_replica(
    app: SchedulerApp,
    fleet_client: Client,
    stub: deployments_pb2_grpc.DeploymentsStub,
    clock: ManualClock,
) -> None:
    # Batch work holds every B200; a critical deployment on B200 needs one.
    batch = fleet_client.scheduler.Allocate(
        scheduler_pb2.AllocateRequest(
            tenant="team-b",
            request_id="train",
            whole=types_pb2.WholeGpus(count=8),
            gpu_models=["B200"],
            priority_class="batch",
        )
    ).allocation
    assert batch.state == types_pb2.ALLOCATION_STATE_PLACED
    clock.advance(120)  # past the batch class's minimum runtime
    _create(
        stub,
        priority_class="critical",
        workload_class=types_pb2.WORKLOAD_CLASS_LATENCY_CRITICAL,
        variants=[pb.DeploymentVariant(name="fp16", dtype="fp16", gpu_models=["B200"])],
    )
    app.deployment_loop.run_once()
    replica = _get(stub).replicas[0]
    assert replica.state == pb.REPLICA_STATE_STARTING and replica.reason == "waiting for GPUs"
    victim = app.allocations.get(SYSTEM, batch.id)
    assert victim.state == "preempting"
    waiting = app.allocations.get(SYSTEM, replica.allocation_id)
    assert waiting.priority_class == "critical" and waiting.state == "pending"
