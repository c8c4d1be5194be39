"""A failed placement's explanation on a big fleet: a bounded random
sample with counts scaled up and said to be estimates, and a full scan only
when the sample missed every node the request could use."""

from __future__ import annotations

from scheduler.domain.fleet import FleetSnapshot
from scheduler.domain.requests import PlacementRequest, WholeDemand
from scheduler.placement import place
from scheduler.placement.explain import EXPLAIN_NODES, SAMPLED
from tests.unit.test_fleet_snapshot import fleet, make_node, whole


def _busy(snapshot: FleetSnapshot, node: str, gpus: int) -> None:
    snapshot.reserve([whole(g) for g in snapshot.nodes[node].gpus[:gpus]])


def test_a_big_fleet_is_explained_from_a_sample_with_scaled_counts() -> None:
    nodes = 4 * EXPLAIN_NODES
    snapshot = fleet(*(make_node(f"n{i:04d}") for i in range(nodes)))
    for i in range(nodes):
        _busy(snapshot, f"n{i:04d}", 6 if i % 2 else 7)  # 2 or 1 GPUs free
    outcome = place(snapshot, PlacementRequest(WholeDemand(4)))
    assert outcome.placement is None and not outcome.unschedulable
    counts = {r.reason: r.count for r in outcome.reasons if r.plugin == "WholeGpusFree"}
    assert set(counts) == {"node has 2 free GPUs, needs 4", "node has 1 free GPUs, needs 4"}
    assert sum(counts.values()) == nodes, "each sampled node stands for four"
    assert all(nodes / 4 < n < 3 * nodes / 4 for n in counts.values()), counts
    note = outcome.reasons[-1]
    assert (note.plugin, note.count) == (SAMPLED, 0)
    assert f"{EXPLAIN_NODES} of {nodes} nodes" in note.reason


def test_a_small_fleet_is_scanned_whole_and_says_nothing_of_sampling() -> None:
    snapshot = fleet(*(make_node(f"n{i}") for i in range(10)))
    for i in range(10):
        _busy(snapshot, f"n{i}", 8)
    outcome = place(snapshot, PlacementRequest(WholeDemand(1)))
    assert outcome.placement is None
    assert SAMPLED not in {r.plugin for r in outcome.reasons}
    counts = {r.plugin: r.count for r in outcome.reasons}
    assert counts["WholeGpusFree"] == 10, "every node counted once, none scaled"


def test_a_rare_model_missed_by_the_sample_is_found_by_a_full_scan() -> None:
    nodes = [make_node(f"l4-{i:04d}", "L4") for i in range(8 * EXPLAIN_NODES)]
    nodes.insert(5, make_node("h100", "H100-80GB", schedulable=False))  # not in the sample
    snapshot = fleet(*nodes)
    request = PlacementRequest(WholeDemand(8), gpu_models=frozenset({"H100-80GB"}))
    outcome = place(snapshot, request)
    assert outcome.placement is None and not outcome.unschedulable
    found = {(r.plugin, r.count) for r in outcome.reasons}
    assert ("NodeSchedulable", 1) in found, "the one H100 node is cordoned"
    assert SAMPLED not in {plugin for plugin, _ in found}


def test_nodes_of_other_models_are_counted_exactly_and_only_allowed_ones_sampled() -> None:
    others = 4 * EXPLAIN_NODES
    allowed = EXPLAIN_NODES + EXPLAIN_NODES // 2
    nodes = [make_node(f"l4-{i:04d}", "L4") for i in range(others)]
    nodes += [make_node(f"h-{i:04d}") for i in range(allowed)]
    snapshot = fleet(*nodes)
    for i in range(allowed):
        _busy(snapshot, f"h-{i:04d}", 6)
    request = PlacementRequest(WholeDemand(4), gpu_models=frozenset({"H100-80GB"}))
    outcome = place(snapshot, request)
    assert outcome.placement is None and not outcome.unschedulable
    counts = {(r.plugin, r.reason): r.count for r in outcome.reasons}
    assert counts["GpuModelAllowed", "model L4 not in the allowed models"] == others * 8
    assert counts["WholeGpusFree", "node has 2 free GPUs, needs 4"] == allowed
    assert f"{EXPLAIN_NODES} of {allowed} nodes" in outcome.reasons[-1].reason
