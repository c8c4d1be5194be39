"""FGD: node fragment per type, the request mix, and placing where fragmentation grows least."""

from __future__ import annotations

from dataclasses import replace

import pytest

from scheduler.domain.fleet import FleetSnapshot, GpuView, NodeView
from scheduler.domain.requests import FractionDemand, PlacementRequest, WholeDemand
from scheduler.placement import PlacementConfig, config_for_policy, place
from scheduler.placement.fragmentation import (
    FragmentationScorer,
    PodType,
    RequestMix,
    fgd_score,
    node_fragment,
    node_versatility,
    pod_type_of,
)

HALF = PodType(cpu_milli=4000, num_gpu=1, gpu_milli=500)
CPU_ONLY = PodType(cpu_milli=2000, num_gpu=0, gpu_milli=0)
TWO_T4 = PodType(cpu_milli=1000, num_gpu=2, gpu_milli=1000, gpu_models=frozenset({"T4"}))
MIX = ((HALF, 0.5), (CPU_ONLY, 0.25), (TWO_T4, 0.25))


def sim_node(name: str, frees: list[int], model: str = "G2", cpu: int = 8000) -> NodeView:
    gpus = [
        GpuView(id=hash((name, i)) & 0xFFFFFF, uuid=f"{name}-{i}", node=name, index=i,
                model=model, memory_mib=0, mig_enabled=False, used_milli=1000 - free)
        for i, free in enumerate(frees)
    ]  # fmt: skip
    return NodeView(name=name, gpus=gpus, cpu_milli=cpu, memory_mib=1024)


def test_fragment_per_type_on_a_hand_computed_node() -> None:
    gpus = (("G2", 1000), ("G2", 300))
    # HALF fits on the idle GPU, so only the 300 left on the other is a fragment: 0.5 * 300.
    # CPU_ONLY can use no GPU: 0.25 * 1300. TWO_T4 has the wrong model: 0.25 * 1300.
    assert node_fragment(MIX, gpus, free_cpu=8000) == pytest.approx(150 + 325 + 325)
    # Without HALF's 4 cores free, all 1300 milli are a fragment for it too.
    assert node_fragment(MIX, gpus, free_cpu=3000) == pytest.approx(650 + 325 + 325)


def test_fragment_when_too_few_gpus_have_enough_free_despite_enough_in_total() -> None:
    two_halves = PodType(cpu_milli=0, num_gpu=2, gpu_milli=500)
    # 1300 milli free in total, but only one GPU has 500: everything is a fragment.
    assert node_fragment(((two_halves, 1.0),), (("G2", 1000), ("G2", 300)), 0) == 1300
    assert node_fragment(((two_halves, 1.0),), (("G2", 1000), ("G2", 600)), 0) == 0
    assert node_fragment(((two_halves, 1.0),), (("G2", 0), ("G2", 0)), 0) == 0


def test_score_is_the_integer_sigmoid_of_the_growth() -> None:
    assert fgd_score(0) == 50
    assert fgd_score(-500) == 62  # 100 * sigmoid(0.5) = 62.2
    assert fgd_score(500) == 37
    assert fgd_score(10**9) == 0


def ten_request_mix(rare_gpus: int) -> RequestMix:
    """Six half-GPU sharers, three CPU-only pods and one rare whole-GPU pod."""
    return RequestMix.from_requests(
        [PlacementRequest(FractionDemand(500, 0), cpu_milli=4000)] * 6
        + [PlacementRequest(WholeDemand(0), cpu_milli=2000)] * 3
        + [PlacementRequest(WholeDemand(rare_gpus), cpu_milli=1000)]
    )


def test_request_mix_keeps_the_most_popular_types_until_coverage() -> None:
    mix = ten_request_mix(rare_gpus=2)
    # 90 % of requests are covered by two types; popularity is renormalised over them.
    typical = mix.typical(0.85)
    assert [t for t, _ in typical] == [PodType(4000, 1, 500), PodType(2000, 0, 0)]
    assert [share for _, share in typical] == pytest.approx([2 / 3, 1 / 3])
    version = mix.version
    mix.record(PlacementRequest(WholeDemand(2), cpu_milli=1000))
    assert mix.version == version + 1
    assert len(mix.typical(1.0)) == 3
    assert pod_type_of(PlacementRequest(WholeDemand(2), cpu_milli=1000)) == PodType(1000, 2, 1000)


def test_fgd_prefers_the_placement_that_grows_fragmentation_least() -> None:
    snapshot = FleetSnapshot()
    snapshot.upsert_node(sim_node("half-used", [500]))
    snapshot.upsert_node(sim_node("idle", [1000]))
    mix = RequestMix([(PodType(0, 1, 600), 1)])
    # The tie order favours "idle"; FGD still fills the 500 left on "half-used", which no
    # 600-milli request could use (growth -500, score 62), over an idle GPU (+500, 37).
    config = PlacementConfig(
        packing_policy="fgd", request_mix=mix, node_order={"idle": 0, "half-used": 1}
    )
    outcome = place(snapshot, PlacementRequest(FractionDemand(500, 0)), config)
    assert outcome.placement is not None
    assert outcome.placement.node == "half-used"
    assert outcome.placement.score == 62


def test_fgd_picks_the_first_gpu_index_with_the_best_score() -> None:
    node = sim_node("n", [1000, 400, 400])
    scorer = FragmentationScorer(RequestMix([(PodType(0, 1, 500), 1)]))
    request = PlacementRequest(FractionDemand(400, 0))
    fitting = node.gpus
    score, chosen = scorer.best(request, node, fitting)
    assert [g.index for g in chosen] == [1]
    assert score == fgd_score(-400)


@pytest.mark.parametrize(("exact_gpu", "tight_gpu"), [(False, False), (True, False), (False, True)])
def test_choose_takes_best_s_gpus_and_scores_them_as_score_choice_does(
    exact_gpu: bool, tight_gpu: bool
) -> None:
    mix = RequestMix(
        [(PodType(0, 1, 500), 2), (PodType(4000, 1, 300), 1), (PodType(0, 2, 1000), 1)]
    )
    scorer = FragmentationScorer(mix, exact_gpu=exact_gpu, tight_gpu=tight_gpu)
    for frees in ([1000, 400, 400], [300, 1000, 700, 1000], [1000, 1000], [900, 100, 550]):
        node = sim_node("n", frees, cpu=16_000)
        for request in (
            PlacementRequest(FractionDemand(300, 0), cpu_milli=4000),
            PlacementRequest(FractionDemand(100, 0)),
            PlacementRequest(WholeDemand(1), cpu_milli=2000),
        ):
            fitting = [g for g in node.gpus if g.free_milli >= request_milli(request)]
            if not fitting:
                continue
            chosen, score = scorer.choose(request, node, fitting)
            assert chosen == scorer.best(request, node, fitting)[1]
            assert score == scorer.score_choice(request, node, chosen)


def request_milli(request: PlacementRequest) -> int:
    demand = request.demand
    return demand.milli if isinstance(demand, FractionDemand) else 1000


def test_a_demand_cut_also_keeps_the_types_that_ask_for_most_gpu() -> None:
    mix = ten_request_mix(rare_gpus=8)
    # By count the 8-GPU type is below the cut; by GPU asked for it is 8,000 of 11,000.
    assert PodType(1000, 8, 1000) not in dict(mix.typical(0.85))
    typical = dict(mix.typical(0.85, demand_cut=True))
    assert list(typical) == [PodType(4000, 1, 500), PodType(2000, 0, 0), PodType(1000, 8, 1000)]
    assert list(typical.values()) == pytest.approx([0.6, 0.3, 0.1])  # still by count


def test_a_walk_policy_may_break_ties_by_a_rule() -> None:
    snapshot = FleetSnapshot()
    snapshot.upsert_node(sim_node("idle", [1000, 1000]))
    snapshot.upsert_node(sim_node("used", [0, 1000, 1000]))
    mix = RequestMix([(PodType(0, 1, 1000), 1)])
    order = {"idle": 0, "used": 1}
    request = PlacementRequest(WholeDemand(1))
    plain = config_for_policy("fgd+walk", request_mix=mix, node_order=order)
    used = config_for_policy("fgd+used+walk", request_mix=mix, node_order=order)
    first, second = place(snapshot, request, plain), place(snapshot, request, used)
    assert first.placement is not None and first.placement.node == "idle"
    assert second.placement is not None and second.placement.node == "used"


def test_fgd_used_breaks_equal_fgd_scores_towards_nodes_in_use() -> None:
    snapshot = FleetSnapshot()
    snapshot.upsert_node(sim_node("idle", [1000, 1000]))
    snapshot.upsert_node(sim_node("used", [0, 1000, 1000]))
    mix = RequestMix([(PodType(0, 1, 1000), 1)])
    order = {"idle": 0, "used": 1}
    request = PlacementRequest(WholeDemand(1))
    plain = PlacementConfig(packing_policy="fgd", request_mix=mix, node_order=order)
    used = PlacementConfig(packing_policy="fgd+used", request_mix=mix, node_order=order)
    first, second = place(snapshot, request, plain), place(snapshot, request, used)
    assert first.placement is not None and first.placement.node == "idle"  # a tie: node order
    assert second.placement is not None and second.placement.node == "used"
    assert second.placement.score == first.placement.score == 50  # the FGD part is reported


def test_versatility_is_the_share_of_typical_types_that_still_fit() -> None:
    gpus = (("G2", 1000), ("G2", 300))
    # HALF fits on the idle GPU (0.5) and CPU_ONLY on the cores (0.25); TWO_T4 needs T4s.
    assert node_versatility(MIX, gpus, free_cpu=8000) == pytest.approx(0.75)
    assert node_versatility(MIX, gpus, free_cpu=3000) == pytest.approx(0.25)  # HALF: 4 cores
    assert node_versatility(MIX, gpus, free_cpu=1000) == 0
    assert node_versatility(MIX, (("T4", 1000), ("T4", 1000)), free_cpu=8000) == 1.0
    assert node_versatility(MIX, (("T4", 1000), ("T4", 0)), free_cpu=8000) == 0.75


# One GPU each (half the mix) or six cores and no GPU (the other half).
NICHE_MIX = RequestMix([(PodType(0, 1, 1000), 1), (PodType(6000, 0, 0), 1)])


def test_fgd_niche_breaks_equal_fgd_scores_towards_the_node_fewer_types_fit() -> None:
    # Both nodes are in use with two free GPUs. Taking one grows neither's fragment for
    # the GPU type and cuts the CPU-only type's (all free GPU) by 1000: delta -500 on
    # both, score 62 on both. The CPU-only type fits on "big" (16 cores) but not on
    # "small" (4): versatility 1.0 against 0.5, so fgd+niche takes "small".
    snapshot = FleetSnapshot()
    snapshot.upsert_node(sim_node("big", [0, 1000, 1000], cpu=16_000))
    snapshot.upsert_node(sim_node("small", [0, 1000, 1000], cpu=4000))
    order = {"big": 0, "small": 1}
    request = PlacementRequest(WholeDemand(1))
    used = PlacementConfig(packing_policy="fgd+used", request_mix=NICHE_MIX, node_order=order)
    niche = PlacementConfig(packing_policy="fgd+niche", request_mix=NICHE_MIX, node_order=order)
    first, second = place(snapshot, request, used), place(snapshot, request, niche)
    assert first.placement is not None and first.placement.node == "big"  # node order
    assert second.placement is not None and second.placement.node == "small"
    assert second.placement.score == first.placement.score == fgd_score(-500) == 62


def test_fgd_niche_puts_a_node_in_use_before_a_niche_idle_node() -> None:
    # Same FGD score (62) on both; "idle-small" is the niche node but idle, so the node in
    # use wins, as in fgd+used.
    snapshot = FleetSnapshot()
    snapshot.upsert_node(sim_node("idle-small", [1000, 1000], cpu=4000))
    snapshot.upsert_node(sim_node("used-big", [0, 1000, 1000], cpu=16_000))
    order = {"idle-small": 0, "used-big": 1}
    config = PlacementConfig(packing_policy="fgd+niche", request_mix=NICHE_MIX, node_order=order)
    outcome = place(snapshot, PlacementRequest(WholeDemand(1)), config)
    assert outcome.placement is not None and outcome.placement.node == "used-big"
    assert outcome.placement.score == 62


def test_a_memory_aware_fragment_counts_free_gpus_a_type_lacks_memory_for() -> None:
    # HALF asks for 32 GiB of host memory: on a node with 16 GiB free it cannot go, so all
    # 1300 free milli are a fragment for it, as when it lacks CPU.
    half_32g = PodType(4000, 1, 500, memory_mib=32_768)
    mix = ((half_32g, 1.0),)
    gpus = (("G2", 1000), ("G2", 300))
    assert node_fragment(mix, gpus, free_cpu=8000, free_memory=65_536) == 300
    assert node_fragment(mix, gpus, free_cpu=8000, free_memory=16_384) == 1300
    assert node_fragment(mix, gpus, free_cpu=8000) == 300  # memory not tracked


def test_a_memory_aware_mix_picks_types_as_fgd_does_then_splits_them_by_memory() -> None:
    requests = (
        [PlacementRequest(FractionDemand(500, 0), cpu_milli=4000, host_memory_mib=8192)] * 3
        + [PlacementRequest(FractionDemand(500, 0), cpu_milli=4000, host_memory_mib=4096)] * 3
        + [PlacementRequest(WholeDemand(1), cpu_milli=1000, host_memory_mib=1024)] * 4
    )
    mix = RequestMix.from_requests(requests)
    plain = mix.typical(1.0)
    assert plain == ((PodType(4000, 1, 500), 0.6), (PodType(1000, 1, 1000), 0.4))
    split = dict(mix.typical(1.0, memory_aware=True))
    assert split == pytest.approx(
        {
            PodType(4000, 1, 500, memory_mib=8192): 0.3,
            PodType(4000, 1, 500, memory_mib=4096): 0.3,
            PodType(1000, 1, 1000, memory_mib=1024): 0.4,
        }
    )
    # Coverage is decided on the plain types: at 60 % only the half-GPU type is kept.
    assert {t.gpu_milli for t, _ in mix.typical(0.6, memory_aware=True)} == {500}


def test_memory_aware_fgd_avoids_the_node_where_a_request_would_strand_gpus() -> None:
    # Both nodes have two idle GPUs. Typical pods take one GPU and 40 GiB. On "tight"
    # (64 GiB free) a 30 GiB request leaves too little memory for any of them, so both
    # of its GPUs become a fragment; "roomy" (128 GiB) keeps room for two. Plain FGD
    # sees no difference and follows the node order to "tight".
    snapshot = FleetSnapshot()
    for name, memory in (("tight", 65_536), ("roomy", 131_072)):
        node = sim_node(name, [1000, 1000])
        snapshot.upsert_node(replace(node, memory_mib=memory))
    mix = RequestMix([(PodType(0, 1, 1000, memory_mib=40_960), 1)])
    order = {"tight": 0, "roomy": 1}
    request = PlacementRequest(FractionDemand(200, 0), host_memory_mib=30_720)
    plain = PlacementConfig(packing_policy="fgd", request_mix=mix, node_order=order)
    aware = PlacementConfig(packing_policy="fgd+mem", request_mix=mix, node_order=order)
    first, second = place(snapshot, request, plain), place(snapshot, request, aware)
    assert first.placement is not None and first.placement.node == "tight"
    assert second.placement is not None and second.placement.node == "roomy"


def test_a_live_mix_forgets_old_requests_and_refreshes_in_steps() -> None:
    mix = RequestMix(window=200)
    half = PlacementRequest(FractionDemand(500, 0))
    whole = PlacementRequest(WholeDemand(1))
    for _ in range(200):
        mix.record(half)
    assert mix.total == 200
    version = mix.version
    for _ in range(200):
        mix.record(whole)
    assert mix.total == 200  # the window: the half-GPU requests have all dropped out
    assert [t.gpu_milli for t, _ in mix.typical(1.0)] == [1000]
    # A full window of 200 re-derives its types every 2 records (1 %), not on each.
    assert mix.version == version + 100


def test_with_no_history_fgd_packs_plainly() -> None:
    # An empty mix would make every node tie at 50 (node order); until there is history,
    # the packing tiers decide, so a 500-milli request fills the half-used GPU.
    snapshot = FleetSnapshot()
    snapshot.upsert_node(sim_node("idle", [1000]))
    snapshot.upsert_node(sim_node("half-used", [500]))
    config = PlacementConfig(
        packing_policy="fgd+mem", request_mix=RequestMix(), node_order={"idle": 0, "half-used": 1}
    )
    outcome = place(snapshot, PlacementRequest(FractionDemand(500, 0)), config)
    assert outcome.placement is not None and outcome.placement.node == "half-used"


def test_a_live_mix_keeps_its_types_while_their_popularity_holds() -> None:
    mix = RequestMix(window=1000)
    half = PlacementRequest(FractionDemand(500, 0))
    whole = PlacementRequest(WholeDemand(1))
    for i in range(1000):
        mix.record(half if i % 2 else whole)
    assert dict(mix.typical(1.0)) == pytest.approx(
        {PodType(0, 1, 500): 0.5, PodType(0, 1, 1000): 0.5}
    )
    version = mix.version
    for i in range(1000):  # the same 50/50 mix: nothing moved, the scorers keep their memos
        mix.record(half if i % 2 else whole)
    assert mix.version == version
    for _ in range(300):  # now 80/20 over the window: the types are re-derived
        mix.record(whole)
    assert mix.version > version
    # Re-derived in steps, so within the tolerance (total variation) of the window's 65 %.
    assert dict(mix.typical(1.0))[PodType(0, 1, 1000)] == pytest.approx(0.65, abs=0.02)
