"""Parallel layouts: rank order, validation and gang placement rules."""

from __future__ import annotations

from dataclasses import replace

import pytest

from scheduler.domain.errors import InvalidArgument
from scheduler.domain.fleet import FleetSnapshot, NodeView
from scheduler.domain.layout import ParallelLayout
from scheduler.domain.requests import PlacementRequest, WholeDemand
from scheduler.placement import PlacementOutcome, place
from scheduler.placement.gang import domain_key
from tests.unit.test_fleet_snapshot import fleet, make_node, whole


def labelled(node: NodeView, **labels: str) -> NodeView:
    return replace(node, labels={k.replace("_", "-"): v for k, v in labels.items()})


def ask(snapshot: FleetSnapshot, layout: ParallelLayout, *models: str) -> PlacementOutcome:
    request = PlacementRequest(
        WholeDemand(layout.world_size), gpu_models=frozenset(models), layout=layout
    )
    return place(snapshot, request)


def rank_nodes(snapshot: FleetSnapshot, outcome: PlacementOutcome) -> list[str]:
    assert outcome.placement is not None, outcome.reasons
    return [snapshot.gpus[c.gpu_id].node for c in outcome.placement.claims]


def take(snapshot: FleetSnapshot, node: str, count: int) -> None:
    snapshot.reserve([whole(g) for g in snapshot.nodes[node].gpus[:count]])


# -- the layout itself -----------------------------------------------------------


def test_rank_order_is_tp_fastest_then_cp_then_pp_then_replica() -> None:
    layout = ParallelLayout(tp=2, cp=2, pp=2, replicas=2)
    assert layout.world_size == 16
    assert layout.coordinates(0) == {
        "tp_rank": 0, "cp_rank": 0, "pp_rank": 0, "ep_rank": 0, "replica": 0
    }  # fmt: skip
    assert layout.coordinates(1)["tp_rank"] == 1
    assert layout.coordinates(2)["cp_rank"] == 1
    assert layout.coordinates(4)["pp_rank"] == 1
    assert layout.coordinates(8)["replica"] == 1
    assert layout.coordinates(15) == {
        "tp_rank": 1, "cp_rank": 1, "pp_rank": 1, "ep_rank": 0, "replica": 1
    }  # fmt: skip


def test_ep_group_spans_tp_groups_of_one_stage() -> None:
    layout = ParallelLayout(tp=2, ep=4, replicas=2)
    assert layout.domain_unit == 4
    assert [layout.coordinates(r)["ep_rank"] for r in range(4)] == [0, 1, 0, 1]


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (ParallelLayout(tp=0), "layout.tp must be 1..1024"),
        (ParallelLayout(tp=4, ep=6), "must divide or be a multiple of layout.tp"),
        (ParallelLayout(tp=2, ep=4), "must divide the ranks of one stage"),
        (ParallelLayout(tp=64, pp=64, replicas=2), "exceeds 4096"),
    ],
)
def test_invalid_layouts_say_which_rule_they_break(layout: ParallelLayout, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        layout.validate()


# -- gang placement --------------------------------------------------------------


def test_tp_group_is_never_split_across_nodes() -> None:
    snapshot = fleet(make_node("a", count=8), make_node("b", count=8))
    take(snapshot, "a", 6)
    take(snapshot, "b", 6)  # 2 + 2 free: 4 GPUs, but no node has 4
    outcome = ask(snapshot, ParallelLayout(tp=4))
    assert outcome.placement is None
    assert outcome.reasons[0].plugin == "GangLayout"
    assert "1 group(s) of 4 idle GPUs" in outcome.reasons[0].reason
    assert not outcome.unschedulable


def test_tp_group_may_span_nodes_of_one_nvl72_domain() -> None:
    a = labelled(make_node("a", count=4), nvlink_domain="nvl72-1", rack="r1")
    b = labelled(make_node("b", count=4), nvlink_domain="nvl72-1", rack="r1")
    snapshot = fleet(a, b)
    assert domain_key(snapshot.nodes["a"]) == domain_key(snapshot.nodes["b"])
    take(snapshot, "b", 1)
    # One node holds the group when it can: the fuller one, b.
    outcome = ask(snapshot, ParallelLayout(tp=2))
    assert rank_nodes(snapshot, outcome) == ["b", "b"]
    take(snapshot, "a", 2)
    # 2 free on a, 3 on b: no node holds 4, the NVLink domain does (fullest node first).
    outcome = ask(snapshot, ParallelLayout(tp=4))
    assert sorted(rank_nodes(snapshot, outcome)) == ["a", "b", "b", "b"]


def test_pipeline_stages_cross_nodes_preferring_the_same_rack() -> None:
    snapshot = fleet(
        labelled(make_node("r1-a", count=2), rack="r1", zone="z1"),
        labelled(make_node("r2-a", count=2), rack="r2", zone="z1"),
        labelled(make_node("r1-b", count=2), rack="r1", zone="z1"),
    )
    outcome = ask(snapshot, ParallelLayout(tp=2, pp=2))
    nodes = rank_nodes(snapshot, outcome)
    # Each stage's TP pair on one node; the second stage in the first one's rack.
    assert nodes[0] == nodes[1] and nodes[2] == nodes[3] and nodes[0] != nodes[2]
    racks = {snapshot.nodes[n].labels["rack"] for n in nodes}
    assert racks == {"r1"}
    assert outcome.placement is not None
    assert outcome.placement.nodes == (nodes[0], nodes[2])
    assert outcome.placement.node == nodes[0]


def test_a_replica_stays_on_one_node_when_one_node_holds_it() -> None:
    snapshot = fleet(make_node("small", count=4), make_node("big", count=8))
    take(snapshot, "small", 2)
    outcome = ask(snapshot, ParallelLayout(tp=2, pp=2))
    assert set(rank_nodes(snapshot, outcome)) == {"big"}


def test_replicas_spread_over_zones_then_racks_then_nodes() -> None:
    snapshot = fleet(
        labelled(make_node("z1-r1-a", count=8), zone="z1", rack="r1"),
        labelled(make_node("z1-r1-b", count=8), zone="z1", rack="r1"),
        labelled(make_node("z1-r2-a", count=8), zone="z1", rack="r2"),
        labelled(make_node("z2-r3-a", count=8), zone="z2", rack="r3"),
    )
    outcome = ask(snapshot, ParallelLayout(tp=2, replicas=3))
    nodes = rank_nodes(snapshot, outcome)
    replicas = [nodes[i * 2] for i in range(3)]
    assert len(set(replicas)) == 3
    zones = [snapshot.nodes[n].labels["zone"] for n in replicas]
    racks = [snapshot.nodes[n].labels["rack"] for n in replicas]
    assert set(zones) == {"z1", "z2"}
    assert len(set(racks)) == 3


def test_context_parallel_ring_fills_a_node_before_crossing() -> None:
    snapshot = fleet(make_node("a", count=8), make_node("b", count=8))
    outcome = ask(snapshot, ParallelLayout(tp=4, cp=2))
    assert len(set(rank_nodes(snapshot, outcome))) == 1


def test_all_ranks_share_one_gpu_model() -> None:
    snapshot = fleet(make_node("h100", count=2), make_node("a100", "A100-80GB", count=2))
    outcome = ask(snapshot, ParallelLayout(tp=2, pp=2))
    assert outcome.placement is None  # 2 + 2 GPUs of different models do not make a gang
    assert outcome.unschedulable
    snapshot = fleet(make_node("h100-1", count=2), make_node("h100-2", count=2))
    assert len(rank_nodes(snapshot, ask(snapshot, ParallelLayout(tp=2, pp=2)))) == 4


def test_unschedulable_when_no_domain_is_large_enough() -> None:
    snapshot = fleet(make_node("a", count=8))
    outcome = ask(snapshot, ParallelLayout(tp=16))
    assert outcome.unschedulable
    assert "needs 1 group(s) of 16 GPUs" in outcome.reasons[0].reason


def test_unhealthy_and_cordoned_gpus_are_left_out_with_reasons() -> None:
    snapshot = fleet(make_node("a", count=4), make_node("b", count=4))
    snapshot.set_node_schedulable("b", False)
    take(snapshot, "a", 2)
    outcome = ask(snapshot, ParallelLayout(tp=2, pp=2))
    assert outcome.placement is None
    plugins = {r.plugin for r in outcome.reasons}
    assert {"GangLayout", "NodeSchedulable"} <= plugins


def test_placement_is_all_or_nothing_and_never_mutates_the_snapshot() -> None:
    snapshot = fleet(make_node("a", count=8), make_node("b", count=8))
    before = {g.id: g.used_milli for g in snapshot.gpus.values()}
    outcome = ask(snapshot, ParallelLayout(tp=8, replicas=3))
    assert outcome.placement is None
    assert {g.id: g.used_milli for g in snapshot.gpus.values()} == before
    outcome = ask(snapshot, ParallelLayout(tp=8, replicas=2))
    assert outcome.placement is not None
    assert len({c.gpu_id for c in outcome.placement.claims}) == 16


def test_a_gang_prefers_the_domain_where_its_model_is_warm() -> None:
    cold = make_node("cold", count=4)
    warm = make_node("warm", count=8)
    warm.gpus[0].standby_models = frozenset({"llama-3.1-70b"})
    snapshot = fleet(cold, warm)
    request = PlacementRequest(WholeDemand(4), layout=ParallelLayout(tp=4))
    assert set(rank_nodes(snapshot, place(snapshot, request))) == {"cold"}  # best fit
    warm_request = replace(request, model="llama-3.1-70b")
    assert set(rank_nodes(snapshot, place(snapshot, warm_request))) == {"warm"}
