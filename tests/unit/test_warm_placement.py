"""WarmModel: tier scores, the snapshot's warm index, and place() choosing warm GPUs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from scheduler.domain.fleet import FleetSnapshot, NodeView
from scheduler.domain.requests import FractionDemand, PlacementRequest, WholeDemand
from scheduler.placement import PlacementConfig, place
from scheduler.placement.plugins import CycleContext, Option
from scheduler.placement.warm import WarmModel
from tests.unit.test_fleet_snapshot import fleet, make_node, whole

LLAMA_70B = "llama-3.1-70b"
LLAMA_8B = "llama-3.1-8b"


def warm(
    node: NodeView,
    model: str,
    *,
    gpus: tuple[int, ...] = (),
    standby: bool = False,
    host_ram: bool = False,
    disk: bool = False,
) -> NodeView:
    """The node with `model` loaded on these GPU indexes and/or in host RAM or on disk."""
    new_gpus = [
        replace(
            g,
            resident_models=g.resident_models | {model},
            standby_models=g.standby_models | ({model} if standby else set()),
        )
        if g.index in gpus
        else g
        for g in node.gpus
    ]
    return replace(
        node,
        gpus=new_gpus,
        host_ram_models=node.host_ram_models | ({model} if host_ram else set()),
        local_disk_models=node.local_disk_models | ({model} if disk else set()),
    )


def score(node: NodeView, model: str, indexes: tuple[int, ...] = (0,)) -> float:
    snapshot = fleet(node)
    stored = snapshot.nodes[node.name]
    ctx = CycleContext(snapshot, PlacementRequest(WholeDemand(len(indexes)), model=model))
    option = Option(stored, tuple(stored.gpus[i] for i in indexes))
    return WarmModel().score(ctx, option)


def test_tiers_rank_standby_then_host_ram_then_disk_then_remote() -> None:
    base = make_node("n", "H100-80GB", 2)
    standby = score(warm(base, LLAMA_70B, gpus=(0,), standby=True), LLAMA_70B)
    serving = score(warm(base, LLAMA_70B, gpus=(0,)), LLAMA_70B)
    serving_elsewhere = score(warm(base, LLAMA_70B, gpus=(1,)), LLAMA_70B)
    host_ram = score(warm(base, LLAMA_70B, host_ram=True), LLAMA_70B)
    disk = score(warm(base, LLAMA_70B, disk=True), LLAMA_70B)
    remote = score(base, LLAMA_70B)
    assert standby == 100.0
    # 141.2 GB and a 20 s engine start: remote 161.2 s, host RAM (PCIe Gen5, 50 GB/s)
    # 22.8 s, disk (5 GB/s) 48.2 s. Serving weights cannot be shared: host-RAM warm.
    assert serving == serving_elsewhere == host_ram == pytest.approx(100 * (1 - 22.824 / 161.2))
    assert disk == pytest.approx(100 * (1 - 48.24 / 161.2))
    assert remote == 0.0
    assert standby > host_ram > disk > remote


def test_host_ram_follows_the_gpus_pcie_generation() -> None:
    a100 = score(warm(make_node("a", "A100-80GB", 1), LLAMA_70B, host_ram=True), LLAMA_70B)
    h100 = score(warm(make_node("h", "H100-80GB", 1), LLAMA_70B, host_ram=True), LLAMA_70B)
    assert a100 == pytest.approx(100 * (1 - 25.648 / 161.2))  # PCIe Gen4, 25 GB/s
    assert h100 == pytest.approx(100 * (1 - 22.824 / 161.2))


def test_small_models_count_less_and_no_model_scores_nothing() -> None:
    node = warm(make_node("n", "H100-80GB", 1), LLAMA_8B, gpus=(0,), standby=True)
    # 16 GB: a 36 s remote cold start (20 s start + 16 s load), against 60 s for full weight.
    assert score(node, LLAMA_8B) == pytest.approx(100 * 36.06 / 60)
    assert score(node, "") == 0.0


def test_an_option_is_as_slow_as_its_slowest_gpu() -> None:
    node = warm(make_node("n", "H100-80GB", 2), LLAMA_70B, gpus=(0,), standby=True)
    assert score(node, LLAMA_70B, (0,)) == 100.0
    # GPU 1 loads from page cache.
    assert score(node, LLAMA_70B, (0, 1)) == pytest.approx(100 * (1 - 22.824 / 161.2))


def test_snapshot_indexes_warm_nodes_and_keeps_them_on_copy_and_removal() -> None:
    snapshot = fleet(
        warm(make_node("a"), LLAMA_70B, gpus=(0,)),
        warm(make_node("b"), LLAMA_70B, disk=True),
        make_node("c"),
    )
    assert [n.name for n in snapshot.warm_nodes(LLAMA_70B)] == ["a", "b"]
    copy = snapshot.copy()
    snapshot.remove_node("a")
    assert [n.name for n in snapshot.warm_nodes(LLAMA_70B)] == ["b"]
    assert [n.name for n in copy.warm_nodes(LLAMA_70B)] == ["a", "b"]
    snapshot.upsert_node(make_node("b"))  # a new report without the model
    assert snapshot.warm_nodes(LLAMA_70B) == []


def request(demand: WholeDemand | FractionDemand, model: str) -> PlacementRequest:
    return PlacementRequest(demand, model=model)


def test_place_picks_the_warm_node_over_a_better_packed_cold_one() -> None:
    # "packed" has exactly 2 idle GPUs: bin packing's first choice for 2 GPUs.
    packed = make_node("packed", count=8)
    roomy = warm(make_node("roomy", count=8), LLAMA_70B, gpus=(4, 5), standby=True)
    snapshot = fleet(packed, roomy)
    snapshot.reserve([whole(g) for g in snapshot.nodes["packed"].gpus[:6]])
    cold = place(snapshot, request(WholeDemand(2), ""))
    assert cold.placement is not None and cold.placement.node == "packed"
    hot = place(snapshot, request(WholeDemand(2), LLAMA_70B))
    assert hot.placement is not None and hot.placement.node == "roomy"
    ids = {g.id for g in snapshot.nodes["roomy"].gpus if g.index in (4, 5)}
    assert {c.gpu_id for c in hot.placement.claims} == ids, "the GPUs holding the model"


def test_warm_candidates_are_scored_even_past_the_walk_cut_off() -> None:
    # Twenty nodes pack better than the warm one; the walk stops after 3 feasible options.
    nodes = [make_node(f"cold-{i:02d}", count=1) for i in range(20)]
    target = warm(make_node("warm", count=8), LLAMA_70B, host_ram=True)
    snapshot = fleet(*nodes, target)
    outcome = place(snapshot, request(WholeDemand(1), LLAMA_70B), PlacementConfig(3))
    assert outcome.placement is not None and outcome.placement.node == "warm"


def test_fractions_prefer_the_gpu_holding_the_model() -> None:
    node = warm(make_node("n", count=4), LLAMA_8B, gpus=(3,), standby=True)
    snapshot: FleetSnapshot = fleet(node, make_node("cold", count=2))
    tight = snapshot.nodes["cold"].gpus[1]
    snapshot.reserve([replace(whole(tight), milli=500, memory_mib=60 * 1024)])
    cold = place(snapshot, request(FractionDemand(250, 16 * 1024), ""))
    assert cold.placement is not None and cold.placement.claims[0].gpu_id == tight.id
    hot = place(snapshot, request(FractionDemand(250, 16 * 1024), LLAMA_8B))
    assert hot.placement is not None
    assert hot.placement.claims[0].gpu_id == snapshot.nodes["n"].gpus[3].id


def test_standby_beats_page_cache_on_the_same_node() -> None:
    node = warm(make_node("n", count=4), LLAMA_70B, gpus=(2,), standby=True, host_ram=True)
    snapshot = fleet(node)
    outcome = place(snapshot, request(WholeDemand(1), LLAMA_70B))
    assert outcome.placement is not None
    assert outcome.placement.claims[0].gpu_id == snapshot.nodes["n"].gpus[2].id


def test_filters_still_rule_a_warm_gpu_that_is_taken_or_unhealthy() -> None:
    node = warm(make_node("n", count=2), LLAMA_70B, gpus=(0,), standby=True)
    snapshot = fleet(node)
    snapshot.set_gpu_health(snapshot.nodes["n"].gpus[0].id, False)
    outcome = place(snapshot, request(WholeDemand(1), LLAMA_70B))
    assert outcome.placement is not None
    assert outcome.placement.claims[0].gpu_id == snapshot.nodes["n"].gpus[1].id
    snapshot.set_node_schedulable("n", False)
    assert place(snapshot, request(WholeDemand(1), LLAMA_70B)).placement is None
