"""Model residency over gRPC: heartbeats report it, each report replaces the
last, ListModels shows it, and an allocation naming the model lands warm."""

from __future__ import annotations

import json

import grpc
import pytest
from sqlalchemy import create_engine, text

from agent.residency import ResidencyFromFleetFile
from agent.runner import residency_messages
from gpupool.v1 import admin_pb2, agents_pb2, scheduler_pb2, types_pb2
from scheduler.fleetfile import SimulatedNode, gpu_uuid
from tests.integration.conftest import Client
from tests.integration.test_cli import gpupool

GPU_TIER = types_pb2.RESIDENCY_TIER_GPU
HOST_RAM = types_pb2.RESIDENCY_TIER_HOST_RAM
DISK = types_pb2.RESIDENCY_TIER_LOCAL_DISK


def _beat(client: Client, node: str, *entries: types_pb2.ModelResidency) -> None:
    request = agents_pb2.HeartbeatRequest(node=node, residency=entries, residency_reported=True)
    client.agents.Heartbeat(request)


def _on_gpus(
    node: str, model: str, indexes: range, standby: bool
) -> list[types_pb2.ModelResidency]:
    return [
        types_pb2.ModelResidency(
            model=model, tier=GPU_TIER, gpu_uuid=gpu_uuid(node, i), standby=standby
        )
        for i in indexes
    ]


def _models(client: Client, model: str = "") -> list[admin_pb2.ModelInfo]:
    return list(client.admin.ListModels(admin_pb2.ListModelsRequest(model=model)).models)


def _where(info: admin_pb2.ModelInfo) -> set[tuple[str, int, bool]]:
    return {(p.node, p.tier, p.standby) for p in info.placements}


def _allocate(client: Client, request_id: str, model: str = "") -> types_pb2.Allocation:
    request = scheduler_pb2.AllocateRequest(
        tenant="t",
        request_id=request_id,
        whole=types_pb2.WholeGpus(count=4),
        gpu_models=["H100-80GB"],
        model=model,
    )
    return client.scheduler.Allocate(request).allocation


def test_reports_are_stored_replaced_and_listed(fleet_client: Client) -> None:
    hf_id = "meta-llama/Llama-3.1-70B-Instruct"
    _beat(
        fleet_client,
        "h100-sxm-1",
        *_on_gpus("h100-sxm-1", hf_id, range(4, 8), standby=True),
        types_pb2.ModelResidency(model="qwen2.5-72b", tier=HOST_RAM),
    )
    _beat(fleet_client, "h200", types_pb2.ModelResidency(model="llama-3.1-70b", tier=DISK))
    models = {m.model: m for m in _models(fleet_client)}
    assert set(models) == {"llama-3.1-70b", "qwen2.5-72b"}, "names are made canonical"
    llama = models["llama-3.1-70b"]
    assert llama.size_bytes == 141_200_000_000  # the catalogue's, in bf16
    assert _where(llama) == {("h100-sxm-1", GPU_TIER, True), ("h200", DISK, False)}
    assert len(llama.placements) == 5
    assert llama.cold_start_seconds["remote"] == pytest.approx(141.2)
    assert llama.cold_start_seconds["host_ram"] == pytest.approx(141.2 / 25)

    # A heartbeat that does not report residency leaves it alone.
    fleet_client.agents.Heartbeat(agents_pb2.HeartbeatRequest(node="h100-sxm-1"))
    assert len(_models(fleet_client, "llama-3.1-70b")[0].placements) == 5

    # The next report replaces the node's rows; other nodes keep theirs.
    _beat(fleet_client, "h100-sxm-1", types_pb2.ModelResidency(model="qwen2.5-72b", tier=DISK))
    (llama,) = _models(fleet_client, "LLAMA-3.1-70B")
    assert _where(llama) == {("h200", DISK, False)}
    (qwen,) = _models(fleet_client, "qwen2.5-72b")
    assert _where(qwen) == {("h100-sxm-1", DISK, False)}

    # An empty report clears the node.
    _beat(fleet_client, "h100-sxm-1")
    (qwen,) = _models(fleet_client, "qwen2.5-72b")
    assert not qwen.placements and qwen.size_bytes, "known model: listed with its cold start"


def test_bad_reports_are_rejected_and_change_nothing(fleet_client: Client) -> None:
    _beat(fleet_client, "l4", types_pb2.ModelResidency(model="mistral-7b", tier=HOST_RAM))
    with pytest.raises(grpc.RpcError) as error:
        _beat(
            fleet_client,
            "l4",
            types_pb2.ModelResidency(model="mistral-7b", tier=GPU_TIER, gpu_uuid="GPU-nope"),
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "did not register" in (error.value.details() or "")
    assert _where(_models(fleet_client, "mistral-7b")[0]) == {("l4", HOST_RAM, False)}
    with pytest.raises(grpc.RpcError) as error:
        _models(fleet_client, "no-such-model")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_an_allocation_naming_the_model_lands_where_it_is_warm(fleet_client: Client) -> None:
    first = _allocate(fleet_client, "plain")
    cold_choice = first.bindings[0].node
    fleet_client.scheduler.Release(scheduler_pb2.ReleaseRequest(allocation_id=first.id))
    warm_node = "h100-sxm-1" if cold_choice == "h100-sxm-0" else "h100-sxm-0"
    _beat(fleet_client, warm_node, *_on_gpus(warm_node, "llama-3.1-70b", range(2, 6), True))

    placed = _allocate(fleet_client, "warm", model="meta-llama/Meta-Llama-3.1-70B-Instruct")
    assert {b.node for b in placed.bindings} == {warm_node}
    assert sorted(b.gpu_index for b in placed.bindings) == [2, 3, 4, 5]


def test_removed_gpus_take_their_residency_rows(fleet_client: Client, clean_database: str) -> None:
    _beat(fleet_client, "l4", *_on_gpus("l4", "llama-3.1-8b", range(2), standby=True))
    # The node comes back with one GPU fewer.
    request = agents_pb2.RegisterNodeRequest(
        name="l4",
        gpus=[types_pb2.GpuSpec(uuid=gpu_uuid("l4", 0), index=0, model="L4")],
    )
    fleet_client.agents.RegisterNode(request)
    (info,) = _models(fleet_client, "llama-3.1-8b")
    assert [p.gpu_uuid for p in info.placements] == [gpu_uuid("l4", 0)]
    engine = create_engine(clean_database)
    with engine.connect() as conn:
        orphans = conn.execute(
            text(
                "SELECT count(*) FROM model_residency r LEFT JOIN gpus g ON g.id = r.gpu_id "
                "WHERE r.tier = 'gpu' AND g.id IS NULL"
            )
        ).scalar_one()
    engine.dispose()
    assert orphans == 0


def test_gpupool_models_command(fleet_client: Client) -> None:
    _beat(
        fleet_client,
        "h200",
        *_on_gpus("h200", "llama-3.1-70b", range(2), standby=True),
        types_pb2.ModelResidency(model="llama-3.1-70b", tier=HOST_RAM),
    )
    code, out = gpupool(fleet_client, "models")
    assert code == 0, out
    assert "llama-3.1-70b" in out and "141.2 GB" in out
    assert "h200: GPU 0,1 standby" in out and "h200: host RAM" in out
    assert "2.4min" in out, "remote cold start: 141.2 GB at 1 GB/s"
    code, out = gpupool(fleet_client, "models", "llama-3.1-405b")
    assert code == 0 and "nowhere" in out and "811.8 GB" in out
    code, out = gpupool(fleet_client, "-o", "json", "models", "meta-llama/Llama-3.1-70B-Instruct")
    (info,) = json.loads(out)
    assert code == 0 and info["model"] == "llama-3.1-70b" and len(info["placements"]) == 3
    code, out = gpupool(fleet_client, "models", "no-such-model")
    assert code != 0 and "not in the LLM catalogue" in out


def test_the_mixed_fleets_warm_models_draw_their_requests(
    fleet_client: Client, mixed_fleet: list[SimulatedNode]
) -> None:
    """As in the README: the fleet file's standby 70B on h200 GPUs 0-1 draws a
    2-GPU request naming it, which without the model FGD packs elsewhere."""
    for node in mixed_fleet:
        entries = residency_messages(ResidencyFromFleetFile(node).read({}))
        fleet_client.agents.Heartbeat(
            agents_pb2.HeartbeatRequest(node=node.name, residency=entries, residency_reported=True)
        )
    request = scheduler_pb2.AllocateRequest(
        tenant="t", request_id="cold", whole=types_pb2.WholeGpus(count=2)
    )
    cold = fleet_client.scheduler.Allocate(request).allocation
    # The mix has seen one 2-GPU request: every node with 2 idle GPUs ties, by name.
    assert {b.node for b in cold.bindings} == {"a100-80-0"}
    fleet_client.scheduler.Release(scheduler_pb2.ReleaseRequest(allocation_id=cold.id))
    request.request_id, request.model = "warm", "meta-llama/Llama-3.1-70B-Instruct"
    warm = fleet_client.scheduler.Allocate(request).allocation
    assert [(b.node, b.gpu_index) for b in warm.bindings] == [("h200", 0), ("h200", 1)]
