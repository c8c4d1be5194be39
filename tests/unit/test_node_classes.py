"""The node classes' change log, and the class ranking a packing scan keeps up to date from it."""

from __future__ import annotations

import random

import pytest

from scheduler.domain.fleet import Claim
from scheduler.domain.requests import FractionDemand, PlacementRequest, WholeDemand
from scheduler.placement import config_for_policy, place
from scheduler.placement.fragmentation import FragmentationScorer, RequestMix
from scheduler.placement.packing import REJECTED, ClassRanking, best_nodes, fitting_gpus
from scheduler.placement.pipeline import pipeline_for
from scheduler.placement.plugins import CycleContext
from tests.unit.test_fragmentation import sim_node
from tests.unit.test_packing_policies import fleet_of


def test_the_change_log_names_classes_that_appeared_or_emptied() -> None:
    snapshot = fleet_of(sim_node("a", [1000], cpu=4000), sim_node("b", [1000], cpu=4000))
    (idle,) = snapshot.node_classes()
    version, changed = snapshot.node_class_changes(-1)
    assert changed is None  # never seen: look at every class
    assert snapshot.node_class_changes(version) == (version, [])
    snapshot.reserve_placement("a", (), cpu_milli=1000)  # a new class; the idle one stays
    now, changed = snapshot.node_class_changes(version)
    (busy,) = set(snapshot.node_classes()) - {idle}
    assert changed == [busy] and now > version
    snapshot.reserve_placement("b", (), cpu_milli=1000)  # b joins a's class; idle empties
    _, changed = snapshot.node_class_changes(now)
    assert changed == [idle]
    assert list(snapshot.node_classes()) == [busy]


def test_a_reader_too_far_behind_or_from_before_a_start_over_rescans(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("scheduler.domain.node_classes.MAX_CHANGES", 4)
    snapshot = fleet_of(sim_node("a", [1000], cpu=8000), sim_node("b", [1000], cpu=8000))
    start, _ = snapshot.node_class_changes(-1)
    for _ in range(5):  # each a new state of "a", the one before emptied
        snapshot.reserve_placement("a", (), cpu_milli=1000)
    assert snapshot.node_class_changes(start)[1] is None  # cut from the log
    recent, _ = snapshot.node_class_changes(-1)
    assert snapshot.node_class_changes(recent)[1] == []
    monkeypatch.setattr("scheduler.domain.node_classes.MAX_STATES", 1)
    snapshot.reserve_placement("a", (), cpu_milli=1000)  # ids start over
    assert snapshot.node_class_changes(recent)[1] is None


def test_the_ranking_keeps_feasible_classes_by_verdict() -> None:
    ranking = ClassRanking()
    assert _best(ranking) == (REJECTED, [])
    ranking.add(1, 40)
    ranking.add(2, REJECTED)
    ranking.add(3, 70)
    ranking.add(4, 70)
    ranking.add(3, 70)  # already there: no change
    assert _best(ranking) == (70, [3, 4])
    ranking.discard(3)
    ranking.discard(4)
    ranking.discard(2)  # never kept: nothing to do
    assert _best(ranking) == (40, [1])
    ranking.clear()
    assert _best(ranking) == (REJECTED, []) and ranking.version == -1


def _best(ranking: ClassRanking) -> tuple[int, list[int]]:
    best, classes = ranking.best()
    return best, sorted(classes)


def _random_requests(rng: random.Random) -> list[PlacementRequest]:
    requests = []
    for _ in range(120):
        if rng.random() < 0.6:
            demand: FractionDemand | WholeDemand = FractionDemand(rng.choice([200, 500, 700]), 0)
        else:
            demand = WholeDemand(rng.choice([0, 1, 2]))
        requests.append(PlacementRequest(demand, cpu_milli=rng.choice([500, 1000, 3000])))
    return requests


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_incremental_scan_places_as_a_scan_from_scratch(seed: int) -> None:
    """Placements and releases in random order: a policy that keeps its ranking across
    place() calls picks the same node and GPUs as a fresh one that scans every class."""
    rng = random.Random(seed)
    nodes = [sim_node(f"n{i}", [1000] * rng.choice([1, 2, 4]), cpu=8000) for i in range(12)]
    snapshot = fleet_of(*nodes)
    requests = _random_requests(rng)
    mix = RequestMix.from_requests(requests)
    order = {node.name: rank for rank, node in enumerate(rng.sample(nodes, len(nodes)))}
    kept = config_for_policy("fgd+mem+cs+all+walk", request_mix=mix, node_order=order)
    held: list[tuple[str, tuple[Claim, ...], int]] = []
    for request in requests:
        fresh = config_for_policy("fgd+mem+cs+all+walk", request_mix=mix, node_order=order)
        outcome = place(snapshot, request, kept)
        assert outcome.placement == place(snapshot, request, fresh).placement
        if outcome.placement is not None:
            placement = outcome.placement
            snapshot.reserve_placement(placement.node, placement.claims, request.cpu_milli)
            held.append((placement.node, placement.claims, request.cpu_milli))
        if held and rng.random() < 0.3:
            node, claims, cpu = held.pop(rng.randrange(len(held)))
            snapshot.release_placement(node, claims, cpu)
    assert held  # the fleet filled up and emptied along the way


def test_classes_that_differ_only_in_host_resources_share_a_gpu_state() -> None:
    snapshot = fleet_of(
        sim_node("a", [1000, 300], cpu=8000),
        sim_node("b", [300, 1000], cpu=8000),
        sim_node("c", [1000, 1000], cpu=8000),
    )
    snapshot.reserve_placement("a", (), cpu_milli=1000)
    gpu_state = snapshot.node_class_gpu_states()
    of = {name: gpu_state[c] for c, names in snapshot.node_classes().items() for name in names}
    assert len(snapshot.node_classes()) == 3
    assert of["a"] == of["b"] != of["c"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_scan_sharing_gpu_sides_between_kinds_scores_as_best_does(seed: int) -> None:
    """Request kinds that differ only in CPU share what the GPUs decide of a verdict: the
    nodes a kept policy rates best are those FGD's own best() rates best, node by node."""
    rng = random.Random(seed)
    nodes = [sim_node(f"n{i}", [1000] * rng.choice([1, 2, 4]), cpu=8000) for i in range(12)]
    snapshot = fleet_of(*nodes)
    requests = _random_requests(rng)
    mix = RequestMix.from_requests(requests)
    config = config_for_policy("fgd+mem+cs+all+walk", request_mix=mix)
    state = config.policy_state
    assert state is not None and isinstance(state.scorer, FragmentationScorer)
    for request in requests:
        ctx = CycleContext(snapshot, request)
        pipeline = pipeline_for(request.demand, True, False)
        got = best_nodes(ctx, pipeline, state, None, len(nodes))
        scores = {}
        for node in snapshot.nodes.values():
            fitting = fitting_gpus(ctx, pipeline, node)
            if fitting is not None and request.cpu_milli <= node.free_cpu_milli:
                scores[node.name] = state.scorer.best(request, node, fitting)[0]
        top = max(scores.values(), default=None)
        assert got == sorted(name for name, score in scores.items() if score == top)
        outcome = place(snapshot, request, config)
        if outcome.placement is not None:
            placement = outcome.placement
            snapshot.reserve_placement(placement.node, placement.claims, request.cpu_milli)


def test_gpu_sides_of_states_no_node_is_in_are_cut_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("scheduler.placement.packing.STALE_VERDICTS", 1)
    snapshot = fleet_of(sim_node("a", [1000, 1000], cpu=8000))
    request = PlacementRequest(FractionDemand(200, 0), cpu_milli=500)
    config = config_for_policy(
        "fgd+mem+cs+all+walk", request_mix=RequestMix.from_requests([request])
    )
    for _ in range(4):  # each placement a new GPU state, judged by the next scan
        outcome = place(snapshot, request, config)
        assert outcome.placement is not None
        claims = outcome.placement.claims
        snapshot.reserve_placement("a", claims, request.cpu_milli)
    assert config.policy_state is not None
    gpu_key = (request.demand, request.host_only, request.gpu_models, request.excluded_models)
    # One node, so one GPU state in use at each scan: the older ones were dropped.
    assert len(config.policy_state.gpu_sides_for(snapshot, gpu_key)) == 1
