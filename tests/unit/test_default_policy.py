"""The default packing policy, FGD inside the best-fit walk: one default live and in the
simulator, packing as that FGD policy alone does, warm nodes and NVLink pairs still won."""

from __future__ import annotations

import random
from dataclasses import replace

from scheduler.domain.fleet import FleetSnapshot
from scheduler.domain.requests import PlacementRequest, WholeDemand
from scheduler.placement import PlacementConfig, config_for_policy, place
from scheduler.placement.fragmentation import FragmentationScorer, RequestMix
from scheduler.placement.policies import DEFAULT_PACKING_POLICY
from scheduler.sim.inflate import inflate
from scheduler.sim.run import node_order
from scheduler.sim.trace import build_fleet, read_nodes, read_pods
from scheduler.sim.traces import default_nodes, resolve_pods
from tests.unit.test_fleet_snapshot import fleet, make_node, whole
from tests.unit.test_warm_placement import LLAMA_70B, warm

DEFAULT = DEFAULT_PACKING_POLICY
# The same FGD scorer as a packing policy, without the walk: what the default must equal.
PACKING_TWIN = DEFAULT.replace("+walk", "")


def _config(policy: str, mix: RequestMix) -> PlacementConfig:
    return config_for_policy(policy, request_mix=mix)


def test_one_default_live_and_in_the_simulator() -> None:
    from scheduler.app import SchedulerSettings
    from scheduler.cli.server_commands import LIVE_PACKING_POLICY, _packing_option
    from scheduler.cli.sim_command import sim

    assert DEFAULT.endswith("+walk") and DEFAULT == LIVE_PACKING_POLICY
    state = config_for_policy(DEFAULT).policy_state
    assert state is not None and isinstance(state.scorer, FragmentationScorer)
    assert state.scorer.memory_aware

    @_packing_option
    def command(packing_policy: str) -> None: ...

    live = next(p for p in command.__click_params__ if p.name == "packing_policy")  # type: ignore[attr-defined]
    simulated = next(p for p in sim.params if p.name == "policy")
    assert live.default == simulated.default == DEFAULT
    assert SchedulerSettings.__dataclass_fields__["packing_policy"].default == DEFAULT


def test_without_warm_or_nvlink_differences_it_chooses_what_fgd_alone_chooses() -> None:
    """A slice of the published default trace, step by step: same node, same GPUs."""
    nodes = read_nodes(default_nodes())[::10]  # 122 nodes, no NVLink topology
    pods = read_pods(resolve_pods("default"))
    capacity = sum(n.gpus for n in nodes) * 1000
    arrivals = inflate(pods, capacity, seed=42)
    mix = RequestMix.from_requests(p.request() for p in pods)
    order = node_order(nodes, 42)
    ours = config_for_policy(DEFAULT, request_mix=mix, node_order=order)
    theirs = config_for_policy(PACKING_TWIN, request_mix=mix, node_order=order)
    fleet_ours, fleet_theirs = build_fleet(nodes), build_fleet(nodes)
    multi_gpu = placed = 0
    for pod in arrivals:
        request = pod.request()
        a = place(fleet_ours, request, ours).placement
        b = place(fleet_theirs, request, theirs).placement
        assert (a and (a.node, a.claims)) == (b and (b.node, b.claims))
        if a is not None:
            placed += 1
            multi_gpu += isinstance(request.demand, WholeDemand) and request.demand.count > 1
            for snapshot in (fleet_ours, fleet_theirs):
                snapshot.reserve_placement(
                    a.node, a.claims, request.cpu_milli, request.host_memory_mib
                )
    assert placed > 500 and multi_gpu > 5  # the tie path for multi-GPU requests ran


def _two_idle_nodes(second_warm: bool = False) -> FleetSnapshot:
    first = make_node("a", count=8)
    second = make_node("b", count=8)
    if second_warm:
        second = warm(second, LLAMA_70B, gpus=(3,), standby=True)
    return fleet(first, second)


def test_a_warm_node_still_wins() -> None:
    request = PlacementRequest(WholeDemand(1), model=LLAMA_70B)
    mix = RequestMix.from_requests([replace(request, model="")] * 10)
    snapshot = _two_idle_nodes(second_warm=True)
    # FGD sees two equal nodes and takes the first; the default takes the standby GPU.
    plain = place(snapshot, request, _config(PACKING_TWIN, mix)).placement
    assert plain is not None and plain.node == "a"
    chosen = place(snapshot, request, _config(DEFAULT, mix)).placement
    assert chosen is not None and chosen.node == "b"
    assert [snapshot.gpus[c.gpu_id].index for c in chosen.claims] == [3]


def test_a_warm_node_wins_over_a_better_fragmentation_score() -> None:
    """Weight 2 on WarmModel outweighs the FGD range: a standby copy beats packing."""
    one = PlacementRequest(WholeDemand(1), model=LLAMA_70B)
    eight = PlacementRequest(WholeDemand(8))
    mix = RequestMix.from_requests([replace(one, model="")] * 5 + [eight] * 5)
    snapshot = _two_idle_nodes(second_warm=True)
    # Node a runs work on 7 GPUs: taking b's would leave no node for 8 GPUs, so FGD
    # scores a far better (b's 7 idle GPUs become a fragment for the 8-GPU type).
    snapshot.reserve([whole(g) for g in snapshot.nodes["a"].gpus[:7]])
    plain = place(snapshot, one, _config(PACKING_TWIN, mix)).placement
    assert plain is not None and plain.node == "a"
    chosen = place(snapshot, one, _config(DEFAULT, mix)).placement
    assert chosen is not None and chosen.node == "b"


def test_nvlink_pairs_still_win_between_equal_nodes() -> None:
    pcie, linked = make_node("a", count=4, links="none"), make_node("b", count=4)
    snapshot = fleet(pcie, linked)
    request = PlacementRequest(WholeDemand(2))
    mix = RequestMix.from_requests([request] * 10)
    plain = place(snapshot, request, _config(PACKING_TWIN, mix)).placement
    assert plain is not None and plain.node == "a"
    chosen = place(snapshot, request, _config(DEFAULT, mix)).placement
    assert chosen is not None and chosen.node == "b"


def test_nvlink_pairs_still_win_inside_a_node() -> None:
    node = make_node("n", count=4, links=[(0, 1), (2, 3)])
    snapshot = fleet(node)
    snapshot.reserve([whole(snapshot.nodes["n"].gpus[1])])
    request = PlacementRequest(WholeDemand(2))
    mix = RequestMix.from_requests([request] * 10)
    plain = place(snapshot, request, _config(PACKING_TWIN, mix)).placement
    assert plain is not None
    assert sorted(snapshot.gpus[c.gpu_id].index for c in plain.claims) == [0, 2]
    chosen = place(snapshot, request, _config(DEFAULT, mix)).placement
    assert chosen is not None
    assert sorted(snapshot.gpus[c.gpu_id].index for c in chosen.claims) == [2, 3]


def test_an_empty_live_mix_packs_before_any_history() -> None:
    """A fresh server: no request recorded yet, so FGD falls back to GpuPacking's tiers
    (a node already in use before an idle one) rather than letting every node tie."""
    snapshot = _two_idle_nodes()
    snapshot.reserve([whole(snapshot.nodes["b"].gpus[0])])
    config = config_for_policy(DEFAULT)
    assert config.request_mix is not None and config.request_mix.total == 0
    chosen = place(snapshot, PlacementRequest(WholeDemand(1)), config).placement
    assert chosen is not None and chosen.node == "b"


def test_random_requests_match_fgd_alone_on_a_fleet_without_topology() -> None:
    rng = random.Random(7)
    snapshot_a = fleet(*(make_node(f"n{i}", count=8, links="none") for i in range(6)))
    snapshot_b = snapshot_a.copy()
    requests = [PlacementRequest(WholeDemand(rng.choice((1, 2, 4)))) for _ in range(14)]
    mix = RequestMix.from_requests(requests)
    ours, theirs = _config(DEFAULT, mix), _config(PACKING_TWIN, mix)
    for request in requests:
        a = place(snapshot_a, request, ours).placement
        b = place(snapshot_b, request, theirs).placement
        assert (a and a.claims) == (b and b.claims)
        if a is not None:
            snapshot_a.reserve(a.claims)
            snapshot_b.reserve(a.claims)


def test_a_class_rejected_for_one_workload_class_is_judged_again_for_another() -> None:
    """The verdict memo outlives mix changes, so it must tell apart requests that the
    generation policy restricts differently (excluded models)."""
    snapshot = fleet(make_node("h", "H100-80GB", 8))
    request = PlacementRequest(WholeDemand(1))
    config = _config(DEFAULT, RequestMix.from_requests([request]))
    ruled_out = replace(request, excluded_models=frozenset({"H100-80GB"}), excluded_reason="x")
    assert place(snapshot, ruled_out, config).placement is None
    assert place(snapshot, request, config).placement is not None
