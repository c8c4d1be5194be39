"""Classic packing policies on hand examples, NodeResourcesFit, node classes and host resources."""

from __future__ import annotations

import pytest

from scheduler.domain.fleet import Claim, FleetSnapshot
from scheduler.domain.requests import FractionDemand, PlacementRequest, WholeDemand
from scheduler.placement import PlacementConfig, Rejection, config_for_policy, place
from scheduler.placement.fragmentation import FragmentationScorer, RequestMix
from scheduler.placement.policies import (
    BestFit,
    DotProduct,
    GpuClustering,
    GpuPacking,
    make_scorer,
)
from tests.unit.test_fragmentation import sim_node


def fleet_of(*nodes) -> FleetSnapshot:  # type: ignore[no-untyped-def]
    snapshot = FleetSnapshot()
    for node in nodes:
        snapshot.upsert_node(node)
    return snapshot


def test_bestfit_scores_cpu_and_gpu_left_half_each() -> None:
    node = sim_node("n", [1000] * 8, cpu=128_000)
    request = PlacementRequest(WholeDemand(1), cpu_milli=64_000)
    # waste = 0.5 * 64/128 + 0.5 * 7000/8000 = 0.6875
    score, chosen = BestFit().best(request, node, node.gpus)
    assert score == 31
    assert [g.index for g in chosen] == [0]


def test_packing_tiers() -> None:
    shared = sim_node("shared", [1000, 400])
    request = PlacementRequest(FractionDemand(300, 0))
    score, chosen = GpuPacking().best(request, shared, shared.gpus)
    assert (score, [g.index for g in chosen]) == (96, [1])  # 100 - 40 % free // 10
    idle8 = sim_node("idle8", [1000] * 8)
    idle2 = sim_node("idle2", [1000] * 2)
    assert GpuPacking().best(request, idle8, idle8.gpus)[0] == 25
    assert GpuPacking().best(request, idle2, idle2.gpus)[0] == 31
    used = sim_node("used", [0, 1000])
    assert GpuPacking().best(PlacementRequest(WholeDemand(1)), used, used.gpus[1:])[0] == 49
    cpu_only = PlacementRequest(WholeDemand(0), cpu_milli=1000)
    assert GpuPacking().best(cpu_only, idle2, [])[0] == 0


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown packing policy"):
        make_scorer("tetris2", None)
    with pytest.raises(ValueError, match="needs a request mix"):
        PlacementConfig(packing_policy="fgd")


@pytest.mark.parametrize("policy", ["default", "bestfit", "packing", "random", "dotprod"])
def test_node_resources_fit_rejects_with_a_reason(policy: str) -> None:
    snapshot = fleet_of(sim_node("small", [1000, 1000], cpu=8000))
    request = PlacementRequest(FractionDemand(500, 0), cpu_milli=10_000)
    outcome = place(snapshot, request, PlacementConfig(packing_policy=policy))
    assert outcome.placement is None
    assert (
        Rejection(
            "NodeResourcesFit", "not enough free CPU (needs 10000 milli-CPU, node has 8000)", 2
        )
        in outcome.reasons
    )


def test_policies_break_ties_by_the_fixed_node_order() -> None:
    snapshot = fleet_of(*(sim_node(f"n{i}", [1000, 1000]) for i in range(4)))
    order = {"n2": 0, "n0": 1, "n3": 2, "n1": 3}
    config = PlacementConfig(packing_policy="bestfit", node_order=order)
    outcome = place(snapshot, PlacementRequest(WholeDemand(1)), config)
    assert outcome.placement is not None and outcome.placement.node == "n2"


def test_host_only_requests_take_cpu_and_memory_only() -> None:
    snapshot = fleet_of(sim_node("a", [1000], cpu=4000), sim_node("b", [1000], cpu=4000))
    request = PlacementRequest(WholeDemand(0), cpu_milli=3000, host_memory_mib=512)
    outcome = place(snapshot, request, PlacementConfig())
    assert outcome.placement is not None and outcome.placement.claims == ()
    snapshot.reserve_placement(outcome.placement.node, (), 3000, 512)
    second = place(snapshot, request, PlacementConfig())
    assert second.placement is not None
    assert second.placement.node != outcome.placement.node
    snapshot.reserve_placement(second.placement.node, (), 3000, 512)
    third = place(snapshot, request, PlacementConfig())
    assert third.placement is None and not third.unschedulable


def test_reserve_placement_checks_host_resources_and_classes_follow_state() -> None:
    snapshot = fleet_of(sim_node("a", [1000], cpu=4000), sim_node("b", [1000], cpu=4000))
    classes = snapshot.node_classes()
    assert [set(m) for m in classes.values()] == [{"a", "b"}]
    gpu = snapshot.nodes["a"].gpus[0]
    with pytest.raises(ValueError, match="milli-CPU"):
        snapshot.reserve_placement("a", [Claim(gpu.id, milli=500)], cpu_milli=5000)
    assert gpu.used_milli == 0  # nothing applied
    with pytest.raises(ValueError, match="not on node b"):
        snapshot.reserve_placement("b", [Claim(gpu.id, milli=500)])
    snapshot.reserve_placement("a", [Claim(gpu.id, milli=500)], cpu_milli=1000)
    assert sorted(sorted(m) for m in snapshot.node_classes().values()) == [["a"], ["b"]]
    snapshot.release_placement("a", [Claim(gpu.id, milli=500)], cpu_milli=1000)
    assert [set(m) for m in snapshot.node_classes().values()] == [{"a", "b"}]


def test_live_fgd_config_starts_from_an_empty_mix_and_learns() -> None:
    config = config_for_policy("fgd")
    assert config.request_mix is not None and config.request_mix.total == 0
    snapshot = fleet_of(sim_node("b", [1000]), sim_node("a", [1000]))
    request = PlacementRequest(FractionDemand(500, 0))
    outcome = place(snapshot, request, config)
    assert outcome.placement is not None and outcome.placement.node == "a"  # all tie: by name
    config.request_mix.record(request)
    assert config.request_mix.total == 1
    assert config_for_policy("bestfit").request_mix is None


def test_node_class_ids_start_over_with_a_new_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("scheduler.domain.node_classes.MAX_STATES", 3)
    snapshot = fleet_of(sim_node("a", [1000], cpu=4000), sim_node("b", [1000], cpu=4000))
    token = snapshot.class_token
    for cpu in (1000, 2000, 3000):  # each a new state of "a"
        snapshot.reserve_placement("a", (), cpu_milli=cpu)
        snapshot.release_placement("a", (), cpu_milli=cpu)
    assert snapshot.class_token is not token
    assert [set(m) for m in snapshot.node_classes().values()] == [{"a", "b"}]


def test_dotprod_prefers_the_smallest_alignment_with_free_resources() -> None:
    node = sim_node("n", [1000] * 8, cpu=64_000)  # memory 1024 MiB, none asked
    request = PlacementRequest(WholeDemand(1), cpu_milli=32_000)
    # GPU 1/8 * 8/8, CPU 1/2 * 1, memory 0: alignment (0.125 + 0.5 + 0) / 3 = 0.208
    assert DotProduct().best(request, node, node.gpus)[0] == 80


def test_clustering_prefers_nodes_running_only_the_same_kind_then_idle_ones() -> None:
    scorer = make_scorer("clustering", None)
    assert isinstance(scorer, GpuClustering)
    share = PlacementRequest(FractionDemand(300, 0))
    whole = PlacementRequest(WholeDemand(1))
    nodes = {name: sim_node(name, [1000] * 8) for name in ("shares", "mixed", "idle", "wholes")}
    scorer.observe("shares", share)
    scorer.observe("mixed", share)
    scorer.observe("mixed", whole)
    scorer.observe("wholes", whole)
    scorer.observe("idle", PlacementRequest(WholeDemand(0), cpu_milli=1000))  # not a GPU kind
    scores = {name: scorer.best(share, node, node.gpus)[0] for name, node in nodes.items()}
    # Tiers of 25: only its kind (75), its kind among others (50), idle (25), others (0);
    # every GPU here is free, so nothing is added within the tier.
    assert scores == {"shares": 75, "mixed": 50, "idle": 25, "wholes": 0}
    busy = sim_node("busy", [0, 0, 0, 0, 1000, 1000, 1000, 1000])
    scorer.observe("busy", share)
    assert scorer.best(share, busy, busy.gpus[4:])[0] == 75 + 25 * 4000 // 8000
    assert scorer.best(PlacementRequest(WholeDemand(0), cpu_milli=1), busy, [])[0] == 0


def test_clustering_in_place_reads_what_was_observed_per_node() -> None:
    snapshot = fleet_of(sim_node("a", [1000, 1000]), sim_node("b", [1000, 1000]))
    config = PlacementConfig(packing_policy="clustering", node_order={"a": 0, "b": 1})
    share = PlacementRequest(FractionDemand(300, 0))
    whole = PlacementRequest(WholeDemand(1))
    assert config.policy_state is not None
    config.policy_state.placed("a", whole)
    config.policy_state.placed("b", share)
    # "a" and "b" are in one node class (same state); their history tells them apart.
    outcome = place(snapshot, share, config)
    assert outcome.placement is not None and outcome.placement.node == "b"
    outcome = place(snapshot, whole, config)
    assert outcome.placement is not None and outcome.placement.node == "a"


def _typical_gpu_sizes(policy: str, mix: RequestMix) -> set[int]:
    scorer = make_scorer(policy, mix)
    assert isinstance(scorer, FragmentationScorer)
    return {t.num_gpu * t.gpu_milli for t, _ in mix.typical(scorer.coverage)}


def test_c99_keeps_the_types_of_99_percent_of_requests_and_drops_the_rarest() -> None:
    """+c99 sits between the paper's 95 % cut and +all: a type that is one request in
    200 (0.5 %) is dropped, one that is 4 % of requests is kept (95 % would drop it)."""
    common = PlacementRequest(FractionDemand(500, 0))
    uncommon = PlacementRequest(WholeDemand(2))
    rare = PlacementRequest(WholeDemand(8))
    mix = RequestMix.from_requests([common] * 191 + [uncommon] * 8 + [rare])
    assert _typical_gpu_sizes("fgd+c99", mix) == {500, 2000}
    assert _typical_gpu_sizes("fgd", mix) == {500}
    assert _typical_gpu_sizes("fgd+all", mix) == {500, 2000, 8000}
