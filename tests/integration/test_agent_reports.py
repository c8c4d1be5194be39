"""What agents report is checked on every path (RegisterNode, Heartbeat, the
Connect stream's hello); a GPU replaced at its index re-registers; an agent
speaks only for its own workers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import grpc
import pytest
from sqlalchemy import text

from gpupool.v1 import admin_pb2, agents_pb2, scheduler_pb2, types_pb2
from scheduler.api import converters
from scheduler.app import SchedulerApp
from scheduler.domain.errors import InvalidArgument
from scheduler.domain.node_reports import GpuHealthReport
from scheduler.fleetfile import SimulatedNode
from scheduler.services.agents import WorkerReport
from scheduler.simfleet import register_request
from tests.integration.conftest import Client

S = types_pb2
NEW_UUID = "GPU-0badc0de-1111-2222-3333-444455556666"
Change = Callable[[agents_pb2.RegisterNodeRequest], None]


def _node(fleet: list[SimulatedNode], name: str) -> SimulatedNode:
    return next(n for n in fleet if n.name == name)


def _stored(client: Client) -> tuple[list[S.Node], list[S.Gpu]]:
    nodes = list(client.admin.ListNodes(admin_pb2.ListNodesRequest()).nodes)
    gpus = list(client.admin.ListGpus(admin_pb2.ListGpusRequest()).gpus)
    return nodes, gpus


def _set_memory(memory: int) -> Change:
    def change(request: agents_pb2.RegisterNodeRequest) -> None:
        request.gpus[0].memory_mib = memory

    return change


def _hostname(request: agents_pb2.RegisterNodeRequest) -> None:
    request.hostname = "h" * 300


def _huge_label(request: agents_pb2.RegisterNodeRequest) -> None:
    request.labels["rack"] = "x" * 2_500_000


def _long_label(request: agents_pb2.RegisterNodeRequest) -> None:
    request.labels["rack"] = "x" * 1000


def _uuid(request: agents_pb2.RegisterNodeRequest) -> None:
    request.gpus[0].uuid = "GPU-" + "z" * 500


def _index(request: agents_pb2.RegisterNodeRequest) -> None:
    request.gpus[0].index = 2**32 - 1


def _bus_id(request: agents_pb2.RegisterNodeRequest) -> None:
    request.gpus[0].pci_bus_id = "0" * 100


BAD_REGISTRATIONS = [
    (_set_memory(80_000), "reports 80000 MiB; the model has 24576 MiB"),
    (_set_memory(2**64 - 1), "18446744073709551615"),
    (_hostname, "hostname"),
    (_huge_label, "2500000 characters"),
    (_long_label, "at most 256"),
    (_uuid, "not NVML's form"),
    (_index, "4294967295"),
    (_bus_id, "PCI bus id"),
]
IDS = ["memory", "2^64-1", "hostname", "huge label", "long label", "uuid", "index", "bus id"]


def _refused(call: Callable[[], object], message: str) -> str:
    """INVALID_ARGUMENT naming the problem, from the API layer's request checks
    (api/validation.py: types and sizes) or the use case's (node_reports)."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    details = info.value.details() or ""
    assert message in details
    assert len(details) < 500, "an error quotes at most a short piece of the input"
    return details


@pytest.mark.parametrize(("change", "message"), BAD_REGISTRATIONS, ids=IDS)
def test_bad_register_node_is_invalid_argument_and_changes_nothing(
    fleet_client: Client, mixed_fleet: list[SimulatedNode], change: Change, message: str
) -> None:
    before = _stored(fleet_client)
    request = register_request(_node(mixed_fleet, "l4"))
    change(request)
    _refused(lambda: fleet_client.agents.RegisterNode(request), message)
    assert _stored(fleet_client) == before


@pytest.mark.parametrize(("change", "message"), BAD_REGISTRATIONS, ids=IDS)
def test_bad_hello_is_invalid_argument_and_changes_nothing(
    fleet_client: Client, mixed_fleet: list[SimulatedNode], change: Change, message: str
) -> None:
    before = _stored(fleet_client)
    request = register_request(_node(mixed_fleet, "l4"))
    change(request)
    hello = agents_pb2.AgentMessage(hello=agents_pb2.AgentHello(node=request))

    def connect() -> object:
        return next(iter(fleet_client.agents.Connect(iter([hello]), timeout=10)))

    _refused(connect, message)
    assert _stored(fleet_client) == before


def test_four_fractions_never_fit_on_an_l4_that_claims_more_memory(
    fleet_client: Client, mixed_fleet: list[SimulatedNode]
) -> None:
    request = register_request(_node(mixed_fleet, "l4"))
    for gpu in request.gpus:
        gpu.memory_mib = 80_000
    _refused(lambda: fleet_client.agents.RegisterNode(request), "reports 80000 MiB")
    placed = 0
    for i in range(4):
        allocation = fleet_client.scheduler.Allocate(
            scheduler_pb2.AllocateRequest(
                tenant="t",
                request_id=f"f{i}",
                fraction=S.FractionalGpu(milli_gpu=100, memory_mib=20_000),
                gpu_models=["L4"],
            )
        ).allocation
        placed += allocation.state == S.ALLOCATION_STATE_PLACED
    assert placed == 2, "one 20,000 MiB fraction per 24 GiB L4"


def _health(**figures: object) -> agents_pb2.GpuHealthReport:
    return agents_pb2.GpuHealthReport(health=S.GPU_HEALTH_HEALTHY, **figures)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("figures", "message"),
    [
        ({"temperature_c": float("nan")}, "temperature"),
        ({"utilization_pct": 250}, "utilisation 250%"),
        ({"memory_used_mib": 2**64 - 1}, "18446744073709551615"),
        ({"recent_xids": list(range(1, 200))}, "recent XIDs"),
        ({"reasons": ["r" * 100_000]}, "100000 characters"),
        ({"reasons": ["r" * 1000]}, "over 256 characters"),
    ],
    ids=["nan", "utilisation", "memory", "xids", "huge reason", "long reason"],
)
def test_bad_heartbeat_health_is_invalid_argument(
    fleet_client: Client,
    mixed_fleet: list[SimulatedNode],
    figures: dict[str, object],
    message: str,
) -> None:
    uuid = _node(mixed_fleet, "l4").gpus[0].uuid
    before = _stored(fleet_client)
    request = agents_pb2.HeartbeatRequest(node="l4", health=[_health(uuid=uuid, **figures)])
    _refused(lambda: fleet_client.agents.Heartbeat(request), message)
    assert _stored(fleet_client) == before
    good = agents_pb2.HeartbeatRequest(node="l4", health=[_health(uuid=uuid, temperature_c=40)])
    assert fleet_client.agents.Heartbeat(good).state == S.NODE_STATE_READY


def test_huge_residency_size_is_invalid_argument(
    fleet_client: Client, mixed_fleet: list[SimulatedNode]
) -> None:
    request = agents_pb2.HeartbeatRequest(
        node="l4",
        residency=[
            S.ModelResidency(
                model="llama-3.1-8b", tier=S.RESIDENCY_TIER_HOST_RAM, size_bytes=2**64 - 1
            )
        ],
        residency_reported=True,
    )
    _refused(lambda: fleet_client.agents.Heartbeat(request), "18446744073709551615")


def test_a_gpu_replaced_at_its_index_re_registers_and_its_work_is_requeued(
    fleet_client: Client, mixed_fleet: list[SimulatedNode]
) -> None:
    l4 = _node(mixed_fleet, "l4")
    held = fleet_client.scheduler.Allocate(
        scheduler_pb2.AllocateRequest(
            tenant="t", request_id="on-l4", whole=S.WholeGpus(count=1), gpu_models=["L4"]
        )
    ).allocation
    assert held.state == S.ALLOCATION_STATE_PLACED
    index = held.bindings[0].gpu_index
    old_uuid = held.bindings[0].gpu_uuid
    request = register_request(l4)
    request.gpus[index].uuid = NEW_UUID

    node = fleet_client.agents.RegisterNode(request).node

    assert sorted(g.uuid for g in node.gpus) == sorted(g.uuid for g in request.gpus)
    gpus = fleet_client.admin.ListGpus(admin_pb2.ListGpusRequest()).gpus
    assert old_uuid not in {g.uuid for g in gpus}
    assert len(gpus) == 58
    replaced = next(g for g in gpus if g.uuid == NEW_UUID)
    assert (replaced.node, replaced.index, replaced.health) == ("l4", index, S.GPU_HEALTH_HEALTHY)
    after = fleet_client.scheduler.GetAllocation(
        scheduler_pb2.GetAllocationRequest(allocation_id=held.id)
    ).allocation
    requeued = [e for e in after.events if e.reason == "REQUEUED"]
    assert len(requeued) == 1
    assert f"GPU {index} ({old_uuid}) replaced by {NEW_UUID}" in requeued[0].message
    assert old_uuid not in {b.gpu_uuid for b in after.bindings}
    # Level-triggered: the same registration again changes nothing.
    fleet_client.agents.RegisterNode(request)
    assert fleet_client.admin.ListGpus(admin_pb2.ListGpusRequest()).gpus == gpus


def test_an_idle_gpu_replaced_at_its_index_re_registers(
    fleet_client: Client, mixed_fleet: list[SimulatedNode]
) -> None:
    request = register_request(_node(mixed_fleet, "l40s"))
    old_uuid = request.gpus[2].uuid
    request.gpus[2].uuid = NEW_UUID
    node = fleet_client.agents.RegisterNode(request).node
    assert [g.uuid for g in node.gpus][2] == NEW_UUID
    gpus = fleet_client.admin.ListGpus(admin_pb2.ListGpusRequest(node="l40s")).gpus
    assert old_uuid not in {g.uuid for g in gpus} and len(gpus) == 4


def test_gpus_that_swap_indexes_re_register(
    fleet_client: Client, mixed_fleet: list[SimulatedNode]
) -> None:
    request = register_request(_node(mixed_fleet, "l4"))
    first, second = request.gpus[0].uuid, request.gpus[1].uuid
    request.gpus[0].uuid, request.gpus[1].uuid = second, first
    fleet_client.agents.RegisterNode(request)
    gpus = fleet_client.admin.ListGpus(admin_pb2.ListGpusRequest(node="l4")).gpus
    assert [(g.index, g.uuid) for g in gpus] == [(0, second), (1, first)]


def test_another_nodes_gpu_uuid_is_failed_precondition(
    fleet_client: Client, mixed_fleet: list[SimulatedNode]
) -> None:
    before = _stored(fleet_client)
    request = register_request(_node(mixed_fleet, "l4"))
    request.gpus[0].uuid = _node(mixed_fleet, "l40s").gpus[0].uuid
    with pytest.raises(grpc.RpcError) as info:
        fleet_client.agents.RegisterNode(request)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "registered to node l40s" in (info.value.details() or "")
    assert _stored(fleet_client) == before


def test_a_worker_report_about_another_nodes_ranks_is_ignored(
    app: SchedulerApp, fleet_client: Client
) -> None:
    held = fleet_client.scheduler.Allocate(
        scheduler_pb2.AllocateRequest(
            tenant="t", request_id="b", whole=S.WholeGpus(count=8), gpu_models=["B200"]
        )
    ).allocation
    assert held.bindings[0].node == "b200"
    # WorkerService acts only on allocations with a worker; the spec itself
    # does not matter here, so it is set directly instead of through a template.
    with app.engine.begin() as conn:
        conn.execute(
            text("UPDATE allocations SET worker = CAST(:w AS jsonb) WHERE id = :id"),
            {"w": '{"template": "t", "args": {}, "env": {}}', "id": held.id},
        )

    def failed(node: str) -> WorkerReport:
        return WorkerReport(held.id, 0, node, "failed", exit_code=1, reason="boom", restarts=3)

    def get() -> S.Allocation:
        request = scheduler_pb2.GetAllocationRequest(allocation_id=held.id)
        return fleet_client.scheduler.GetAllocation(request).allocation

    app.workers.report("l4", [failed("rogue")])
    after = get()
    assert after.state == S.ALLOCATION_STATE_PLACED
    assert not [e for e in after.events if e.reason in ("REQUEUED", "FAILED")]
    assert list(after.workers) == []
    # The node that holds rank 0 is heard (and named by the scheduler, not by the report).
    app.workers.report("b200", [failed("rogue")])
    after = get()
    requeued = [e for e in after.events if e.reason == "REQUEUED"]
    assert len(requeued) == 1 and "worker rank 0 on b200 failed" in requeued[0].message


def test_a_bad_stream_heartbeat_is_invalid_argument_and_records_nothing(
    app: SchedulerApp, fleet_client: Client, mixed_fleet: list[SimulatedNode]
) -> None:
    """The stream's heartbeats reach AgentHub.heartbeat; the servicer decides
    what a rejected one does to the stream."""
    l4 = _node(mixed_fleet, "l4")
    hello = converters.agent_hello(agents_pb2.AgentHello(node=register_request(l4)))
    session = app.agents.connect(hello)
    try:
        uuid = l4.gpus[0].uuid
        bad = GpuHealthReport(uuid, "unhealthy", ("overheated",), memory_used_mib=30_000)
        with pytest.raises(InvalidArgument, match="30000 MiB used is more than the GPU's 24576"):
            app.agents.heartbeat(session, [bad])
        assert session.last_health == {}, "the rejected report was not applied"
        app.agents.heartbeat(session, [replace(bad, memory_used_mib=20_000)])
        assert session.last_health == {uuid: ("unhealthy", ("overheated",))}
    finally:
        app.agents.disconnect(session)
