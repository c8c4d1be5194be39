"""What agents report as model residency: fleet-file models, allocations they
run (and the page cache they leave), residency.json, and only-when-changed."""

from __future__ import annotations

import json
import queue
from pathlib import Path
from typing import Any

import pytest

from agent.nvml import SimulatedNvml
from agent.residency import ResidencyFromJsonFile, ResidencyTracker, parse_residency_document
from agent.runner import Agent, AgentSettings
from gpupool.v1 import agents_pb2, types_pb2
from scheduler.domain.residency import ResidentModel
from scheduler.fleetfile import gpu_uuid, parse_fleet
from scheduler.security.channels import ClientCredentials

FLEET = {
    "nodes": [
        {
            "name": "n",
            "gpus": {"model": "H100-80GB", "count": 4},
            "models": [
                {"model": "llama-3.1-8b", "gpus": [0, 1], "standby": True},
                {"model": "llama-3.1-70b", "tier": "host_ram"},
            ],
        }
    ]
}


def agent(tmp_path: Path) -> Agent:
    (node,) = parse_fleet(FLEET)
    settings = AgentSettings(
        scheduler="unused:0",
        node_name="n",
        credentials=ClientCredentials(insecure=True),
        state_dir=tmp_path,
    )
    return Agent(settings, SimulatedNvml(node))


def entries(messages: object) -> set[tuple[str, int, str, bool]]:
    return {(m.model, m.tier, m.gpu_uuid, m.standby) for m in messages}  # type: ignore[attr-defined]


def desired(*allocations: types_pb2.Allocation) -> agents_pb2.SchedulerMessage:
    return agents_pb2.SchedulerMessage(
        desired=agents_pb2.DesiredState(node="n", allocations=list(allocations))
    )


def test_fleet_file_models_parse_and_are_checked() -> None:
    (node,) = parse_fleet(FLEET)
    assert [(m.model, m.tier, m.gpus, m.standby) for m in node.models] == [
        ("llama-3.1-8b", "gpu", (0, 1), True),
        ("llama-3.1-70b", "host_ram", (), False),
    ]
    entries: list[tuple[dict[str, Any], str]] = [
        ({"model": "m", "gpus": [3]}, "outside"),
        ({"model": "m"}, "needs gpus"),
        ({"model": "m", "tier": "host_ram", "standby": True}, "standby"),
    ]
    for entry, message in entries:
        spec = {"name": "x", "gpus": {"model": "L4", "count": 1}, "models": [entry]}
        with pytest.raises(ValueError, match=message):
            parse_fleet({"nodes": [spec]})


def test_hello_reports_everything_heartbeats_only_changes(tmp_path: Path) -> None:
    runner = agent(tmp_path)
    hello = runner.hello()
    assert entries(hello.residency) == {
        ("llama-3.1-8b", types_pb2.RESIDENCY_TIER_GPU, gpu_uuid("n", 0), True),
        ("llama-3.1-8b", types_pb2.RESIDENCY_TIER_GPU, gpu_uuid("n", 1), True),
        ("llama-3.1-70b", types_pb2.RESIDENCY_TIER_HOST_RAM, "", False),
    }
    beat = runner.heartbeat()
    assert not beat.residency_reported and not beat.residency, "unchanged: not resent"

    # An allocation of a model runs on GPUs 2 and 3: resident there, serving.
    allocation = types_pb2.Allocation(
        id="a-1",
        model="qwen2.5-72b",
        bindings=[
            types_pb2.GpuBinding(node="n", gpu_uuid=gpu_uuid("n", 2)),
            types_pb2.GpuBinding(node="n", gpu_uuid=gpu_uuid("n", 3)),
        ],
    )
    runner._handle(desired(allocation), queue_stub())
    beat = runner.heartbeat()
    assert beat.residency_reported
    gpu = types_pb2.RESIDENCY_TIER_GPU
    assert {("qwen2.5-72b", gpu, gpu_uuid("n", 2), False)} <= entries(beat.residency)
    assert len(beat.residency) == 5, "the full set, not a delta"
    assert not runner.heartbeat().residency_reported

    # Released: the weights stay in the node's page cache.
    runner._handle(desired(), queue_stub())
    beat = runner.heartbeat()
    assert beat.residency_reported
    qwen = {e for e in entries(beat.residency) if e[0] == "qwen2.5-72b"}
    assert qwen == {("qwen2.5-72b", types_pb2.RESIDENCY_TIER_HOST_RAM, "", False)}


def queue_stub() -> queue.Queue[agents_pb2.AgentMessage]:
    return queue.Queue()


def test_residency_json_file(tmp_path: Path) -> None:
    path = tmp_path / "residency.json"
    source = ResidencyFromJsonFile(path)
    uuids = {0: "GPU-a", 1: "GPU-b"}
    assert source.read(uuids) == [], "no file: nothing warm"
    document = {
        "models": [
            {"model": "llama-3.1-70b", "gpus": [0, 1], "standby": True},
            {"model": "llama-3.1-8b", "tier": "local_disk", "size_bytes": 5},
        ]
    }
    path.write_text(json.dumps(document))
    assert source.read(uuids) == [
        ResidentModel("llama-3.1-70b", "gpu", "GPU-a", True),
        ResidentModel("llama-3.1-70b", "gpu", "GPU-b", True),
        ResidentModel("llama-3.1-8b", "local_disk", size_bytes=5),
    ]
    path.write_text("{not json")
    assert len(source.read(uuids)) == 3, "a malformed file keeps the last good report"
    with pytest.raises(ValueError, match="no GPU with index 7"):
        parse_residency_document({"models": [{"model": "m", "gpus": [7]}]}, uuids)


def test_real_nodes_do_not_invent_residency_from_allocations(tmp_path: Path) -> None:
    tracker = ResidencyTracker(ResidencyFromJsonFile(tmp_path / "none.json"), False)
    tracker.observe_allocations({"a": ("llama-3.1-8b", ["GPU-a"])})
    tracker.observe_allocations({})
    assert tracker.for_hello({}) == []
    assert tracker.changed({}) is None
