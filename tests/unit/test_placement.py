"""place(): best-fit choices, filter reasons, unschedulable detection, and a brute-force check."""

from __future__ import annotations

import random

import pytest

from scheduler.domain.catalogue import CATALOGUE
from scheduler.domain.fleet import Claim, FleetSnapshot, GpuView
from scheduler.domain.mig import free_starts, profile_for
from scheduler.domain.requests import (
    Demand,
    FractionDemand,
    MigDemand,
    PlacementRequest,
    WholeDemand,
)
from scheduler.placement import PlacementConfig, PlacementOutcome, Rejection, place
from tests.unit.test_fleet_snapshot import fleet, make_node, mig_claim, usage, whole


def ask(
    snapshot: FleetSnapshot, demand: Demand, *models: str, feasible_to_score: int = 16
) -> PlacementOutcome:
    request = PlacementRequest(demand, gpu_models=frozenset(models))
    return place(snapshot, request, PlacementConfig(feasible_to_score=feasible_to_score))


def placed_gpus(outcome: PlacementOutcome) -> list[int]:
    assert outcome.placement is not None, outcome.reasons
    return [c.gpu_id for c in outcome.placement.claims]


def reasons(outcome: PlacementOutcome) -> set[tuple[str, str, int]]:
    assert outcome.placement is None
    return {(r.plugin, r.reason, r.count) for r in outcome.reasons}


def take(snapshot: FleetSnapshot, node: str, indexes: list[int]) -> None:
    snapshot.reserve([whole(g) for g in snapshot.nodes[node].gpus if g.index in indexes])


# -- whole GPUs ----------------------------------------------------------------


def test_whole_prefers_the_node_with_fewest_free_gpus_that_fits() -> None:
    snapshot = fleet(make_node("empty"), make_node("three-free"), make_node("one-free"))
    take(snapshot, "three-free", [0, 1, 2, 3, 4])
    take(snapshot, "one-free", [0, 1, 2, 3, 4, 5, 6])
    outcome = ask(snapshot, WholeDemand(2))
    assert outcome.placement is not None
    assert outcome.placement.node == "three-free"
    gpus = [snapshot.gpus[i] for i in placed_gpus(outcome)]
    assert [g.index for g in gpus] == [5, 6]
    assert outcome.placement.claims == tuple(whole(g) for g in gpus)
    assert 0 <= outcome.placement.score <= 100


def test_whole_gpus_are_never_split_across_nodes() -> None:
    snapshot = fleet(make_node("a", count=2), make_node("b", count=2))
    outcome = ask(snapshot, WholeDemand(3))
    assert outcome.placement is None
    assert outcome.unschedulable
    assert outcome.reasons == (
        Rejection("Unschedulable", "unschedulable: no node has 3 GPUs of an allowed model "
                  "(largest: 2)", 0),
    )  # fmt: skip
    take(snapshot, "a", [0])
    outcome = ask(snapshot, WholeDemand(2))
    assert outcome.placement is not None and outcome.placement.node == "b"


def test_whole_gpus_are_all_of_one_model() -> None:
    mixed = make_node("mixed", count=2)
    mixed.gpus.extend(make_node("mixed", "H200", count=2).gpus)
    snapshot = fleet(mixed)
    assert ask(snapshot, WholeDemand(3)).placement is None
    outcome = ask(snapshot, WholeDemand(2), "H200")
    assert {snapshot.gpus[i].model for i in placed_gpus(outcome)} == {"H200"}


def test_whole_prefers_nvlink_peers() -> None:
    # Two NVLink pairs (0-1, 2-3) as on H100 NVL; GPU 0 busy: 2-3 is the linked pair.
    snapshot = fleet(make_node("nvl", "H100-NVL", count=4, links=[(0, 1), (2, 3)]))
    take(snapshot, "nvl", [0])
    outcome = ask(snapshot, WholeDemand(2))
    assert [snapshot.gpus[i].index for i in placed_gpus(outcome)] == [2, 3]
    # A single GPU goes where it breaks no free pair: GPU 1, whose peer is busy.
    outcome = ask(snapshot, WholeDemand(1))
    assert [snapshot.gpus[i].index for i in placed_gpus(outcome)] == [1]


def test_whole_skips_busy_unhealthy_and_mig_gpus() -> None:
    snapshot = fleet(make_node("n", count=4), make_node("m", "A100-80GB", count=8, mig=True))
    gpus = snapshot.nodes["n"].gpus
    snapshot.set_gpu_health(gpus[0].id, False)
    snapshot.reserve([Claim(gpus[1].id, milli=100, memory_mib=1)])
    outcome = ask(snapshot, WholeDemand(2))
    assert [snapshot.gpus[i].index for i in placed_gpus(outcome)] == [2, 3]
    outcome = ask(snapshot, WholeDemand(3))
    assert reasons(outcome) == {
        ("GpuHealthy", "GPU unhealthy", 1),
        ("GpuIdle", "GPU already in use", 1),
        ("GpuMode", "GPU in MIG mode takes only MIG requests", 8),
        ("WholeGpusFree", "node has 2 free GPUs, needs 3", 1),
        ("WholeGpusFree", "node has 0 free GPUs, needs 3", 1),
    }
    assert not outcome.unschedulable


def test_whole_respects_cordons_and_allowed_models() -> None:
    snapshot = fleet(make_node("h"), make_node("l", "L4", links="none"))
    snapshot.set_node_schedulable("h", False)
    outcome = ask(snapshot, WholeDemand(1), "H100-80GB")
    assert reasons(outcome) == {
        ("NodeSchedulable", "node cordoned, draining or unreachable", 1),
        ("GpuModelAllowed", "model L4 not in the allowed models", 8),
        ("WholeGpusFree", "node has 0 free GPUs, needs 1", 1),
    }
    assert not outcome.unschedulable
    outcome = ask(snapshot, WholeDemand(1))
    assert outcome.placement is not None and outcome.placement.node == "l"


# -- fractions -----------------------------------------------------------------


def test_fraction_best_fit_by_memory_then_compute() -> None:
    snapshot = fleet(make_node("h", count=3), make_node("l", "L4", count=1, links="none"))
    h0, h1, _ = snapshot.nodes["h"].gpus
    snapshot.reserve([Claim(h0.id, 200, 60 * 1024), Claim(h1.id, 600, 60 * 1024)])
    # Both H100s with 20 GiB free beat the empty L4 (24 GiB); h1 has less compute free.
    outcome = ask(snapshot, FractionDemand(300, 10 * 1024))
    assert placed_gpus(outcome) == [h1.id]
    assert outcome.placement is not None
    assert outcome.placement.claims == (Claim(h1.id, milli=300, memory_mib=10 * 1024),)
    # Needing more compute than h1 has left: h0.
    assert placed_gpus(ask(snapshot, FractionDemand(500, 10 * 1024))) == [h0.id]
    # Needing 22 GiB: the L4.
    assert placed_gpus(ask(snapshot, FractionDemand(100, 22 * 1024))) == [
        snapshot.nodes["l"].gpus[0].id
    ]


def test_fraction_reasons() -> None:
    snapshot = fleet(make_node("h", count=2), make_node("m", "A100-80GB", count=1, mig=True))
    h0, h1 = snapshot.nodes["h"].gpus
    snapshot.reserve([Claim(h0.id, 900, 1024), Claim(h1.id, 100, 70 * 1024)])
    needs = 20 * 1024
    outcome = ask(snapshot, FractionDemand(200, needs))
    # h1 lacks memory, h0 (which has the most free) lacks compute.
    largest = h0.free_memory_mib
    assert reasons(outcome) == {
        ("FractionFits", "not enough free compute (needs 200 milli-GPU)", 1),
        (
            "FractionFits",
            f"not enough free memory (needs {needs} MiB, largest free {largest} MiB)",
            1,
        ),
        ("GpuMode", "GPU in MIG mode takes only MIG requests", 1),
    }


def test_fraction_unschedulable_when_no_gpu_has_the_memory() -> None:
    snapshot = fleet(make_node("l", "L4", count=2, links="none"), make_node("h"))
    outcome = ask(snapshot, FractionDemand(100, 30 * 1024), "L4")
    assert outcome.unschedulable
    assert outcome.reasons[0].plugin == "Unschedulable"
    assert outcome.reasons[0].reason == (
        f"unschedulable: no GPU of an allowed model has {30 * 1024} MiB "
        f"(largest: {CATALOGUE['L4'].memory_mib} MiB)"
    )
    assert ask(snapshot, FractionDemand(100, 30 * 1024)).placement is not None


# -- MIG -----------------------------------------------------------------------


def test_mig_prefers_partly_used_gpus_and_keeps_room() -> None:
    snapshot = fleet(make_node("m", "A100-80GB", count=2, mig=True))
    g0, g1 = snapshot.nodes["m"].gpus
    snapshot.reserve([mig_claim(g1, "1g.10gb", 6)])
    outcome = ask(snapshot, MigDemand("3g.40gb"))
    # g1 is partly used; slots 0-3 stay free for a 4g (start 0) or 3g.
    assert outcome.placement is not None
    assert outcome.placement.claims == (mig_claim(g1, "3g.40gb", 0),)
    snapshot.reserve(outcome.placement.claims)
    outcome = ask(snapshot, MigDemand("3g.40gb"))
    assert outcome.placement is not None
    assert outcome.placement.claims == (mig_claim(g0, "3g.40gb", 4),)


def test_a_profile_name_can_mean_different_shapes() -> None:
    # 1g.10gb is one slice on an A100-80GB but two on an A100-40GB.
    snapshot = fleet(
        make_node("big", "A100-80GB", count=1, mig=True),
        make_node("small", "A100-40GB", count=1, mig=True),
    )
    (big,) = snapshot.nodes["big"].gpus
    (small,) = snapshot.nodes["small"].gpus
    snapshot.reserve([mig_claim(big, "3g.40gb", 4)])
    snapshot.reserve([mig_claim(small, "3g.20gb", 4), mig_claim(small, "1g.5gb", 0)])
    # The A100-40GB is left with 1 free slice after placing, the A100-80GB with 3.
    outcome = ask(snapshot, MigDemand("1g.10gb"))
    assert outcome.placement is not None
    assert outcome.placement.claims == (mig_claim(small, "1g.10gb", 2),)
    snapshot.reserve(outcome.placement.claims)
    outcome = ask(snapshot, MigDemand("1g.10gb"))
    assert outcome.placement is not None
    assert outcome.placement.claims == (mig_claim(big, "1g.10gb", 3),)


def test_mig_reasons() -> None:
    snapshot = fleet(
        make_node("a", "A100-80GB", count=3, mig=True),
        make_node("h", "H200", count=1, mig=True),
        make_node("p", "A100-80GB", count=1),
    )
    a0, a1, a2 = snapshot.nodes["a"].gpus
    snapshot.reserve([mig_claim(a0, "4g.40gb", 0), mig_claim(a0, "3g.40gb", 4)])
    snapshot.reserve([mig_claim(a1, "1g.10gb+me", 0)])
    snapshot.reserve([mig_claim(a2, "4g.40gb", 0), mig_claim(a2, "2g.20gb", 4)])
    snapshot.reserve([mig_claim(a2, "1g.10gb", 6)])
    assert reasons(ask(snapshot, MigDemand("1g.10gb+me"))) == {
        ("MigSlotsFree", "GPU already holds the most 1g.10gb+me it can (1)", 1),
        ("MigSlotsFree", "not enough free compute slices (needs 1)", 2),
        ("MigProfileExists", "profile 1g.10gb+me does not exist on H200", 1),
        ("GpuMode", "GPU not in MIG mode", 1),
    }
    snapshot.reserve([mig_claim(a1, "3g.40gb", 4)])
    outcome = ask(snapshot, MigDemand("3g.40gb"), "A100-80GB")
    assert ("MigSlotsFree", "no free aligned memory slices for 3g.40gb", 1) in reasons(outcome)
    assert ("GpuModelAllowed", "model H200 not in the allowed models", 1) in reasons(outcome)


def test_mig_unschedulable() -> None:
    snapshot = fleet(make_node("h", "H200", count=1, mig=True), make_node("a", "A100-80GB"))
    outcome = ask(snapshot, MigDemand("3g.40gb"))
    assert outcome.unschedulable
    assert outcome.reasons[0].reason.startswith("unschedulable: no GPU of an allowed model in MIG")
    outcome = ask(snapshot, MigDemand("5g.1tb"))
    reason = outcome.reasons[0].reason
    assert reason.startswith("unschedulable: no GPU model has MIG profile 5g.1tb; ")
    assert ask(snapshot, MigDemand("3g.71gb")).placement is not None


# -- the engine as a whole ---------------------------------------------------------


def test_busy_cordoned_or_unhealthy_is_not_unschedulable() -> None:
    snapshot = fleet(make_node("a", count=2))
    snapshot.set_node_schedulable("a", False)
    outcome = ask(snapshot, WholeDemand(2))
    assert not outcome.unschedulable
    assert reasons(outcome) == {("NodeSchedulable", "node cordoned, draining or unreachable", 1)}
    assert ask(snapshot, FractionDemand(1, 1)).reasons == (
        Rejection("NodeSchedulable", "node cordoned, draining or unreachable", 2),
    )


def test_an_empty_fleet_is_unschedulable() -> None:
    for demand in (WholeDemand(1), FractionDemand(1, 1), MigDemand("1g.10gb")):
        assert ask(FleetSnapshot(), demand).unschedulable


def test_impossible_sizes_are_unschedulable() -> None:
    snapshot = fleet(make_node("a"))
    assert ask(snapshot, WholeDemand(0)).unschedulable
    assert ask(snapshot, FractionDemand(1001, 1)).unschedulable


def test_reasons_are_aggregated_and_sorted_by_count() -> None:
    snapshot = fleet(make_node("a", count=4), make_node("b", count=2), make_node("l", "L4"))
    snapshot.set_gpu_health(snapshot.nodes["a"].gpus[0].id, False)
    snapshot.reserve([whole(g) for g in snapshot.nodes["a"].gpus[1:]])
    snapshot.reserve([whole(g) for g in snapshot.nodes["b"].gpus])
    outcome = ask(snapshot, FractionDemand(1, 1), "H100-80GB")
    assert outcome.reasons == (
        Rejection("GpuModelAllowed", "model L4 not in the allowed models", 8),
        Rejection("FractionFits", "not enough free memory (needs 1 MiB, largest free 0 MiB)", 5),
        Rejection("GpuHealthy", "GPU unhealthy", 1),
    )


def test_place_never_mutates_the_snapshot() -> None:
    snapshot = fleet(make_node("a"), make_node("m", "A100-80GB", mig=True))
    before = usage(snapshot)
    for demand in (WholeDemand(8), FractionDemand(10, 10), MigDemand("7g.80gb"), WholeDemand(9)):
        ask(snapshot, demand)
    assert usage(snapshot) == before


def test_feasible_to_score_bounds_the_walk_and_scores_pick_among_it() -> None:
    # Node "linked" has NVLink, "pcie" none; both have two free GPUs.
    snapshot = fleet(make_node("pcie", count=2, links="none"), make_node("linked", count=2))
    assert ask(snapshot, WholeDemand(2), feasible_to_score=1).placement.node == "pcie"  # type: ignore[union-attr]
    assert ask(snapshot, WholeDemand(2)).placement.node == "linked"  # type: ignore[union-attr]


def test_score_weights_are_configurable() -> None:
    snapshot = fleet(make_node("pcie", count=2, links="none"), make_node("linked", count=2))
    request = PlacementRequest(WholeDemand(2))
    outcome = place(snapshot, request, PlacementConfig(score_weights={"NvlinkLocality": 1.0}))
    assert outcome.placement is not None
    assert (outcome.placement.node, outcome.placement.score) == ("linked", 100.0)
    outcome = place(snapshot, request, PlacementConfig(score_weights={}))
    assert outcome.placement is not None and outcome.placement.node == "pcie"


# -- randomized: index-driven placement against a brute-force scan -------------------


def feasible(snapshot: FleetSnapshot, request: PlacementRequest, gpu: GpuView) -> bool:
    """Brute force: can this one GPU take this (fraction or MIG) request?"""
    allowed = not request.gpu_models or gpu.model in request.gpu_models
    if not (allowed and gpu.healthy and snapshot.nodes[gpu.node].schedulable):
        return False
    demand = request.demand
    if isinstance(demand, FractionDemand):
        return (
            not gpu.mig_enabled
            and gpu.free_milli >= demand.milli
            and gpu.free_memory_mib >= demand.memory_mib
        )
    assert isinstance(demand, MigDemand)
    profile = profile_for(gpu.model, demand.profile)
    return bool(
        gpu.mig_enabled
        and profile is not None
        and free_starts(profile, gpu.mig_used_mask, gpu.mig_used_compute, gpu.mig_profile_counts)
    )


def idle_counts(snapshot: FleetSnapshot, request: PlacementRequest) -> dict[tuple[str, str], int]:
    """Brute force: (node, model) -> GPUs a whole-GPU request could take there now."""
    counts: dict[tuple[str, str], int] = {}
    for g in snapshot.gpus.values():
        allowed = not request.gpu_models or g.model in request.gpu_models
        usable = g.healthy and snapshot.nodes[g.node].schedulable and not g.mig_enabled
        if allowed and usable and g.is_empty:
            counts[g.node, g.model] = counts.get((g.node, g.model), 0) + 1
    return counts


def assert_best_fit(
    snapshot: FleetSnapshot, request: PlacementRequest, claims: tuple[Claim, ...]
) -> None:
    """The primary best-fit criterion of the choice is the best any feasible candidate has."""
    demand = request.demand
    chosen = snapshot.gpus[claims[0].gpu_id]
    if isinstance(demand, WholeDemand):
        fits = [n for n in idle_counts(snapshot, request).values() if n >= demand.count]
        assert idle_counts(snapshot, request)[chosen.node, chosen.model] == min(fits)
        return
    assert feasible(snapshot, request, chosen)
    others = [g for g in snapshot.gpus.values() if feasible(snapshot, request, g)]
    if isinstance(demand, FractionDemand):
        assert chosen.free_memory_mib == min(g.free_memory_mib for g in others)
    else:
        assert isinstance(demand, MigDemand)
        assert slices_used_after(chosen, demand.profile) == max(
            slices_used_after(g, demand.profile) for g in others
        )


def slices_used_after(gpu: GpuView, name: str) -> int:
    profile = profile_for(gpu.model, name)
    assert profile is not None
    return gpu.mig_used_mask.bit_count() + profile.memory_slices


def random_request(rng: random.Random) -> PlacementRequest:
    models = frozenset(rng.sample(["H100-80GB", "L4", "A100-80GB", "A100-40GB"], rng.randint(0, 2)))
    roll = rng.random()
    demand: Demand
    if roll < 0.35:
        demand = WholeDemand(rng.choice((1, 2, 3, 4, 8)))
    elif roll < 0.7:
        demand = FractionDemand(rng.randrange(1, 1001), rng.randrange(0, 90 * 1024))
    else:
        model = rng.choice(("A100-80GB", "A100-40GB"))
        demand = MigDemand(rng.choice(CATALOGUE[model].mig_profiles).name)
    return PlacementRequest(demand, gpu_models=models)


@pytest.mark.parametrize("seed", range(4))
def test_placement_agrees_with_a_brute_force_scan(seed: int) -> None:
    rng = random.Random(seed)
    snapshot = fleet(
        make_node("h1"),
        make_node("h2", count=4),
        make_node("l1", "L4", count=4, links="none"),
        make_node("a1", "A100-80GB", count=4, mig=True),
        make_node("a2", "A100-40GB", count=2, mig=True),
        make_node("a3", "A100-80GB", count=2),
        make_node("big", count=16),
    )
    held: list[tuple[Claim, ...]] = []
    placed = failed = 0
    for _ in range(300):
        if rng.random() < 0.05:
            snapshot.set_gpu_health(rng.choice(list(snapshot.gpus)), rng.random() < 0.7)
        if rng.random() < 0.03:
            snapshot.set_node_schedulable(rng.choice(list(snapshot.nodes)), rng.random() < 0.7)
        if held and rng.random() < 0.4:
            snapshot.release(held.pop(rng.randrange(len(held))))
            continue
        request = random_request(rng)
        outcome = place(snapshot, request)
        demand = request.demand
        if isinstance(demand, WholeDemand):
            expected = any(n >= demand.count for n in idle_counts(snapshot, request).values())
        else:
            expected = any(feasible(snapshot, request, g) for g in snapshot.gpus.values())
        assert (outcome.placement is not None) == expected, (request, outcome)
        if outcome.placement is None:
            failed += 1
            assert outcome.reasons
            continue
        placed += 1
        claims = outcome.placement.claims
        assert {snapshot.gpus[c.gpu_id].node for c in claims} == {outcome.placement.node}
        assert_best_fit(snapshot, request, claims)
        snapshot.reserve(claims)  # raises if the placement over-commits
        held.append(claims)
    assert placed > 50 and failed > 10
