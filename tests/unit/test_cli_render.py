"""The admin CLI: rendering from hand-built protos, argument errors, and error paths.

Rendering is checked without a server; the few transport tests run a fake
Admin/Scheduler servicer on port 0 with a real channel.
"""

# The CLI prints the multiplication sign on purpose ("2 times whole"), as do the tests.

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from click.testing import CliRunner
from rich.console import Console

from gpupool.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
    types_pb2,
)
from scheduler.cli import render
from scheduler.cli.main import cli

NOW = datetime(2025, 11, 26, 12, 0, 0, tzinfo=UTC)


def ts(seconds_ago: float) -> datetime:
    return NOW - timedelta(seconds=seconds_ago)


def cells(row: render.Row) -> dict[str, str]:
    return dict(row)


# --- scalar formatting -------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0s"),
        (42, "42s"),
        (60, "1m"),
        (3599, "59m"),
        (3600, "1h"),
        (3900, "1h5m"),
        (86400, "1d"),
        (86400 + 3 * 3600, "1d3h"),
    ],
)
def test_format_duration(seconds: int, expected: str) -> None:
    assert render.format_duration(seconds) == expected


def test_format_age() -> None:
    node = types_pb2.Node(last_heartbeat_at=ts(3))
    assert render.format_age(node.last_heartbeat_at, NOW) == "3s ago"
    # Unset means the node never sent one, not "56 years ago".
    assert render.format_age(types_pb2.Node().last_heartbeat_at, NOW) == "never"
    # A timestamp slightly ahead of the local clock is shown as now.
    ahead = types_pb2.Node(last_heartbeat_at=NOW + timedelta(seconds=2))
    assert render.format_age(ahead.last_heartbeat_at, NOW) == "0s ago"


def test_format_time_is_utc() -> None:
    event = types_pb2.AllocationEvent(at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert render.format_time(event.at) == "2025-01-02T03:04:05Z"
    assert render.format_time(types_pb2.AllocationEvent().at) == "-"


def test_enum_labels() -> None:
    assert render.allocation_state_label(types_pb2.ALLOCATION_STATE_PREEMPTING) == "preempting"
    assert render.node_state_label(types_pb2.NODE_STATE_UNREACHABLE) == "unreachable"
    assert render.workload_class_label(types_pb2.WORKLOAD_CLASS_LONG_CONTEXT) == "long-context"
    assert render.workload_class_label(types_pb2.WORKLOAD_CLASS_UNSPECIFIED) == "-"
    assert render.allocation_state_label(99) == "unknown(99)"


# --- allocations -------------------------------------------------------------


def binding(node: str, index: int) -> types_pb2.GpuBinding:
    return types_pb2.GpuBinding(node=node, gpu_index=index, gpu_uuid=f"GPU-{node}-{index}")


def test_what_column() -> None:
    whole = types_pb2.Allocation(whole=types_pb2.WholeGpus(count=2))
    fraction = types_pb2.Allocation(
        fraction=types_pb2.FractionalGpu(milli_gpu=500, memory_mib=20480)
    )
    mig = types_pb2.Allocation(mig=types_pb2.MigSlice(profile="3g.40gb"))
    assert render.describe_resources(whole) == "2× whole"
    assert render.describe_resources(fraction) == "500m + 20.0 GiB"
    assert render.describe_resources(mig) == "MIG 3g.40gb"
    assert render.describe_resources(types_pb2.Allocation()) == "-"


def test_where_column_groups_gpus_by_node() -> None:
    bindings = [binding("b", 3), binding("a", 1), binding("a", 0), binding("a", 1)]
    assert render.describe_placement(bindings) == "b:3 a:0,1"
    assert render.describe_placement([]) == "-"


def test_allocation_row_pending_shows_first_reason() -> None:
    allocation = types_pb2.Allocation(
        id="al-1",
        tenant="search",
        request_id="req-1",
        state=types_pb2.ALLOCATION_STATE_PENDING,
        whole=types_pb2.WholeGpus(count=4),
        priority_class="high",
        created_at=ts(125),
        pending_reasons=[
            types_pb2.PendingReason(plugin="fit", reason="not enough free GPUs", count=3),
            types_pb2.PendingReason(plugin="model", reason="wrong GPU model", count=2),
        ],
    )
    row = cells(render.allocation_row(allocation, NOW))
    assert row["STATE"] == "pending"
    assert row["WHAT"] == "4× whole"
    assert row["WHERE"] == "-"
    assert row["AGE"] == "2m ago"
    assert row["REASON"] == "fit: not enough free GPUs"

    allocation.unschedulable = True
    reason = cells(render.allocation_row(allocation, NOW))["REASON"]
    assert reason == "unschedulable: fit: not enough free GPUs"
    # Said once: the scheduler's Unschedulable verdict already says it.
    allocation.pending_reasons[0].plugin = "Unschedulable"
    allocation.pending_reasons[0].reason = "unschedulable: no node has 16 GPUs"
    reason = cells(render.allocation_row(allocation, NOW))["REASON"]
    assert reason == "unschedulable: no node has 16 GPUs"

    allocation.state = types_pb2.ALLOCATION_STATE_RUNNING
    assert cells(render.allocation_row(allocation, NOW))["REASON"] == ""


def test_mig_binding_row() -> None:
    mig = binding("a", 2)
    mig.MergeFrom(
        types_pb2.GpuBinding(mig_profile="3g.40gb", mig_start=4, mig_size=4, mig_memory_mib=40960)
    )
    row = cells(render.binding_row(mig))
    assert row["MIG"] == "3g.40gb slots 4-7 (not created yet)"
    assert row["UUID"] == "GPU-a-2"
    # A MIG instance claims memory slices, not milli-GPU: its memory is the instance's.
    assert (row["MILLI"], row["MEMORY"]) == ("-", "40.0 GiB")
    mig.mig_device_uuid = "MIG-1234abcd-0000-0000-0000-000000000000"
    assert cells(render.binding_row(mig))["MIG"].endswith(mig.mig_device_uuid)


def test_pending_reason_counts_say_what_they_count() -> None:
    def rejected(plugin: str, count: int) -> str:
        reason = types_pb2.PendingReason(plugin=plugin, reason="r", count=count)
        return cells(render.reason_row(reason))["REJECTED"]

    assert rejected("FractionFits", 12) == "12 GPUs"
    assert rejected("GpuHealthy", 1) == "1 GPU"
    assert rejected("NodeSchedulable", 3) == "3 nodes"
    assert rejected("GangLayout", 2) == "2 groups short"
    assert rejected("Unschedulable", 0) == "-"


def test_a_live_rank_has_no_exit_code_yet() -> None:
    ready = types_pb2.WorkerStatus(rank=0, state=types_pb2.WORKER_STATE_READY, exit_code=0)
    assert cells(render.worker_row(ready))["EXIT"] == "-"
    failed = types_pb2.WorkerStatus(rank=0, state=types_pb2.WORKER_STATE_FAILED, exit_code=3)
    assert cells(render.worker_row(failed))["EXIT"] == "3"


def test_json_reads_like_the_tables() -> None:
    node = types_pb2.Node(
        name="n",
        state=types_pb2.NODE_STATE_READY,
        gpus=[types_pb2.Gpu(uuid="u", memory_mib=81920, health=types_pb2.GPU_HEALTH_DEGRADED)],
    )
    data = render.to_dict(node)
    assert data["state"] == "ready"
    assert data["gpus"][0]["memory_mib"] == 81920, "64-bit integers are numbers"
    assert data["gpus"][0]["health"] == "degraded"
    allocation = types_pb2.Allocation(
        state=types_pb2.ALLOCATION_STATE_PLACED,
        workload_class=types_pb2.WORKLOAD_CLASS_LATENCY_CRITICAL,
        fraction=types_pb2.FractionalGpu(milli_gpu=250, memory_mib=2**33),
    )
    data = render.to_dict(allocation)
    assert (data["state"], data["workload_class"]) == ("placed", "latency-critical")
    assert data["fraction"]["memory_mib"] == 2**33


def test_allocation_view_flags_unschedulable(capsys: pytest.CaptureFixture[str]) -> None:
    allocation = types_pb2.Allocation(
        id="al-2",
        state=types_pb2.ALLOCATION_STATE_PENDING,
        unschedulable=True,
        mig=types_pb2.MigSlice(profile="7g.80gb"),
        pending_reasons=[types_pb2.PendingReason(plugin="mig", reason="no MIG GPU", count=5)],
        events=[
            types_pb2.AllocationEvent(seq=1, state=types_pb2.ALLOCATION_STATE_PENDING, at=ts(9))
        ],
    )
    console = Console(width=200, color_system=None)
    with console.capture() as captured:
        console.print(render.allocation_view(allocation, NOW))
    text = captured.get()
    assert text.splitlines()[0].startswith("UNSCHEDULABLE")
    assert "Pending reasons" in text and "no MIG GPU" in text
    assert "History" in text


# --- nodes, GPUs, catalogue --------------------------------------------------


def test_node_row() -> None:
    node = types_pb2.Node(
        name="gpu-01",
        state=types_pb2.NODE_STATE_CORDONED,
        gpu_count=8,
        free_gpus=3,
        gpu_models=["H100-80GB"],
        allocation_count=2,
        last_heartbeat_at=ts(3),
        labels={"zone": "b", "rack": "r1"},
    )
    row = cells(render.node_row(node, NOW))
    assert row == {
        "NAME": "gpu-01",
        "STATE": "cordoned",
        "GPUS": "8× H100-80GB",
        "FREE": "3",
        "ALLOCS": "2",
        "HEARTBEAT": "3s ago",
        "LABELS": "rack=r1,zone=b",
    }


def test_node_gpus_mixed_models() -> None:
    gpus = [types_pb2.Gpu(model="H100-80GB")] * 2 + [types_pb2.Gpu(model="A100-80GB")]
    node = types_pb2.Node(gpu_count=3, gpus=gpus)
    assert render.describe_node_gpus(node) == "1× A100-80GB + 2× H100-80GB"


def test_gpu_row_mig_and_health() -> None:
    gpu = types_pb2.Gpu(
        uuid="GPU-5a7f8b3c-1111-2222-3333-444455556666",
        node="gpu-01",
        index=1,
        model="A100-80GB",
        memory_mib=81920,
        mig_enabled=True,
        health=types_pb2.GPU_HEALTH_DEGRADED,
        health_reasons=["xid 79", "ecc"],
        used_milli=428,
        free_milli=572,
        used_memory_mib=40960,
        free_memory_mib=40960,
        mig_slot_map="0000....",
        mig_instances=[
            types_pb2.MigInstance(profile="3g.40gb", start=0, size=4, allocation_id="abcdef123456")
        ],
    )
    row = cells(render.gpu_row(gpu))
    assert row["UUID"] == "GPU-5a7f8b3c…"
    assert row["MODE"] == "MIG"
    assert row["HEALTH"] == "degraded (xid 79; ecc)"
    assert row["MILLI USED/FREE"] == "428/572"
    assert row["MEM USED/FREE"] == "40.0 GiB/40.0 GiB"
    assert row["MIG"] == "0000.... 3g.40gb@0→abcdef123456"

    full = cells(render.gpu_row(types_pb2.Gpu(health=types_pb2.GPU_HEALTH_HEALTHY)))
    assert (full["MODE"], full["MIG"], full["HEALTH"]) == ("full", "-", "healthy")


def test_catalogue_row() -> None:
    model = types_pb2.GpuModel(
        name="A100-80GB",
        memory_mib=81920,
        memory_bandwidth_gbps=2039,
        bf16_tflops=312,
        nvlink_gbps=600,
        throughput_weight=1.0,
        mig_profiles=[types_pb2.MigProfile(name="1g.10gb", max_count=7)],
    )
    row = cells(render.catalogue_row(model))
    assert row["MEMORY"] == "80.0 GiB"
    assert row["WEIGHT"] == "1.00"
    assert row["MIG PROFILES"] == "1g.10gb×7"


def test_action_lines() -> None:
    node = types_pb2.Node(name="n1", state=types_pb2.NODE_STATE_DRAINING, allocation_count=2)
    assert render.node_action_line(node) == "node n1: draining (2 allocations still bound)"
    allocation = types_pb2.Allocation(id="al-1", state=types_pb2.ALLOCATION_STATE_RELEASED)
    assert render.allocation_action_line(allocation) == "allocation al-1: released"


def test_watch_line_falls_back_to_allocation_without_event() -> None:
    allocation = types_pb2.Allocation(
        state=types_pb2.ALLOCATION_STATE_PLACED,
        updated_at=datetime(2025, 1, 1, tzinfo=UTC),
        bindings=[binding("a", 0)],
    )
    first = scheduler_pb2.WatchAllocationResponse(allocation=allocation)
    assert render.watch_line(first) == "2025-01-01T00:00:00Z  placed      a:0"
    event = types_pb2.AllocationEvent(
        state=types_pb2.ALLOCATION_STATE_RUNNING,
        message="agent confirmed",
        at=datetime(2025, 1, 1, 0, 0, 5, tzinfo=UTC),
    )
    update = scheduler_pb2.WatchAllocationResponse(allocation=allocation, event=event)
    assert render.watch_line(update) == "2025-01-01T00:00:05Z  running     a:0  agent confirmed"


def test_json_keeps_proto_field_names_and_zero_values() -> None:
    node = types_pb2.Node(name="n1", gpu_count=8, free_gpus=0)
    data = render.to_dict(node)
    assert data["name"] == "n1"
    assert data["gpu_count"] == 8
    assert data["free_gpus"] == 0
    assert data["state"] == "unspecified"
    assert render.to_dicts([node, node]) == [data, data]


# --- arguments ---------------------------------------------------------------


@pytest.mark.parametrize(
    "resources",
    [
        ["--whole", "1", "--mig", "3g.40gb"],
        ["--whole", "1", "--fraction", "500:1024"],
        [],
    ],
)
def test_allocate_needs_exactly_one_resource(resources: list[str]) -> None:
    result = CliRunner().invoke(cli, ["allocate", "--tenant", "t", *resources])
    assert result.exit_code == 2
    assert "exactly one of --whole, --fraction, --mig or --layout, or --serve" in result.output


@pytest.mark.parametrize("value", ["500", "500:", "x:1024", "0:1024", "1001:1024", "500:0"])
def test_allocate_rejects_bad_fraction(value: str) -> None:
    result = CliRunner().invoke(cli, ["allocate", "--tenant", "t", "--fraction", value])
    assert result.exit_code == 2
    assert "--fraction" in result.output


def test_allocate_rejects_bad_label() -> None:
    result = CliRunner().invoke(cli, ["allocate", "--tenant", "t", "--whole", "1", "--label", "x"])
    assert result.exit_code == 2
    assert "KEY=VALUE" in result.output


def test_allocations_rejects_unknown_state() -> None:
    result = CliRunner().invoke(cli, ["allocations", "--state", "sleeping"])
    assert result.exit_code == 2


@pytest.mark.parametrize("command", [["nodes"], ["allocation", "show", "x"], ["watch", "x"]])
def test_unreachable_scheduler_is_one_line_exit_2(command: list[str]) -> None:
    result = CliRunner().invoke(cli, ["--insecure", "--scheduler", "127.0.0.1:1", *command])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot reach the scheduler at 127.0.0.1:1 (")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


# --- against a fake server ---------------------------------------------------


def allocation_page(start: int, count: int) -> list[types_pb2.Allocation]:
    return [
        types_pb2.Allocation(id=f"al-{i}", state=types_pb2.ALLOCATION_STATE_RUNNING)
        for i in range(start, start + count)
    ]


class FakeAdmin(admin_pb2_grpc.AdminServicer):
    """Pages of allocations, one node, and NOT_FOUND for anything else."""

    def __init__(self) -> None:
        self.requests: list[scheduler_pb2.ListAllocationsRequest] = []

    def ListNodes(self, request, context):
        return admin_pb2.ListNodesResponse(nodes=[types_pb2.Node(name="n1", gpu_count=2)])

    def ListAllocations(self, request, context):
        self.requests.append(request)
        if request.request_id:  # no allocation here was asked for by request id
            return scheduler_pb2.ListAllocationsResponse()
        start = int(request.page_token or 0)
        page = allocation_page(start, request.page_size)
        return scheduler_pb2.ListAllocationsResponse(
            allocations=page, next_page_token=str(start + len(page))
        )

    def GetAllocation(self, request, context):
        context.abort(grpc.StatusCode.NOT_FOUND, f"allocation {request.allocation_id} not found")

    def CordonNode(self, request, context):
        node = types_pb2.Node(name=request.name, state=types_pb2.NODE_STATE_CORDONED)
        return admin_pb2.NodeActionResponse(node=node)


class FakeScheduler(scheduler_pb2_grpc.SchedulerServicer):
    def __init__(self) -> None:
        self.allocate_requests: list[scheduler_pb2.AllocateRequest] = []

    def Allocate(self, request, context):
        self.allocate_requests.append(request)
        if request.no_wait:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "no free GPU\nright now")
        allocation = types_pb2.Allocation(
            id="al-new", tenant=request.tenant, state=types_pb2.ALLOCATION_STATE_PLACED
        )
        return scheduler_pb2.AllocateResponse(allocation=allocation)


@pytest.fixture
def fake_server() -> Iterator[tuple[str, FakeAdmin, FakeScheduler]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    # The fakes implement only the calls these tests make.
    admin, scheduler = FakeAdmin(), FakeScheduler()  # type: ignore[abstract]
    admin_pb2_grpc.add_AdminServicer_to_server(admin, server)
    scheduler_pb2_grpc.add_SchedulerServicer_to_server(scheduler, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", admin, scheduler
    server.stop(grace=None)


def test_allocations_follows_pages_until_limit(fake_server) -> None:
    target, admin, _ = fake_server
    result = CliRunner().invoke(
        cli, ["--insecure", "--scheduler", target, "-o", "json", "allocations", "--limit", "1500"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert isinstance(data, list)
    assert len(data) == 1500
    assert data[0]["id"] == "al-0"
    assert [r.page_size for r in admin.requests] == [1000, 500]
    assert [r.page_token for r in admin.requests] == ["", "1000"]


def test_nodes_table_and_json(fake_server) -> None:
    target, _, _ = fake_server
    table = CliRunner().invoke(cli, ["--insecure", "--scheduler", target, "nodes"])
    assert table.exit_code == 0, table.output
    assert "n1" in table.stdout and "HEARTBEAT" in table.stdout
    data = json.loads(
        CliRunner().invoke(cli, ["--insecure", "--scheduler", target, "-o", "json", "nodes"]).stdout
    )
    assert data == [render.to_dict(types_pb2.Node(name="n1", gpu_count=2))]


def test_not_found_is_one_line_exit_1(fake_server) -> None:
    target, _, _ = fake_server
    result = CliRunner().invoke(
        cli, ["--insecure", "--scheduler", target, "allocation", "show", "al-9"]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no allocation with id or request id 'al-9'")


def test_cordon_prints_one_line(fake_server) -> None:
    target, _, _ = fake_server
    result = CliRunner().invoke(cli, ["--insecure", "--scheduler", target, "cordon", "n1"])
    assert (result.exit_code, result.stdout) == (0, "node n1: cordoned\n")


def test_allocate_builds_the_request(fake_server) -> None:
    target, _, scheduler = fake_server
    args = ["--insecure", "--scheduler", target, "-o", "json", "allocate", "--tenant", "t"]
    args += ["--fraction", "500:20480", "--workload-class", "batch", "--label", "team=x"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == "al-new"
    (request,) = scheduler.allocate_requests
    assert request.WhichOneof("resources") == "fraction"
    assert (request.fraction.milli_gpu, request.fraction.memory_mib) == (500, 20480)
    assert request.workload_class == types_pb2.WORKLOAD_CLASS_BATCH
    assert dict(request.labels) == {"team": "x"}
    assert request.request_id  # a random idempotency key when none is given


def test_resource_exhausted_is_one_line_exit_1(fake_server) -> None:
    target, _, _ = fake_server
    args = [
        "--insecure",
        "--scheduler",
        target,
        "allocate",
        "--tenant",
        "t",
        "--whole",
        "1",
        "--no-wait",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert result.stderr == "error: no free GPU right now\n"


def test_no_credentials_is_one_actionable_line(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./.gpupool/admin.yaml here
    monkeypatch.setenv("HOME", str(tmp_path))
    result = CliRunner().invoke(cli, ["--scheduler", "127.0.0.1:1", "nodes"])
    assert result.exit_code == 1
    assert "no credentials for the scheduler: run `gpupool up`" in result.stderr
    assert "Traceback" not in result.output
