"""choose_victims(): least lost work, fewest victims, eligibility, gangs, pruning, baseline."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Sequence

import pytest

from scheduler.domain.fleet import Claim, FleetSnapshot, GpuView
from scheduler.domain.layout import ParallelLayout
from scheduler.domain.requests import (
    Demand,
    FractionDemand,
    MigDemand,
    PlacementRequest,
    WholeDemand,
)
from scheduler.placement import place
from scheduler.preemption import (
    RunningAllocation,
    VictimChoice,
    choose_victims,
    choose_victims_naive,
    gpus_held,
    is_eligible,
    lost_work,
)
from scheduler.preemption.cheapest import cheapest_subset
from tests.unit.test_fleet_snapshot import fleet, make_node, mig_claim, whole

NOW = 1_000_000.0
CRITICAL = 1000


def job(
    name: str,
    claims: Iterable[Claim],
    *,
    priority: int = 10,
    since_checkpoint: float = 60.0,
    age: float = 3600.0,
    preemptible: bool = True,
    protected_until: float = 0.0,
) -> RunningAllocation:
    return RunningAllocation(
        id=name,
        priority=priority,
        preemptible=preemptible,
        protected_until=protected_until,
        claims=tuple(claims),
        last_checkpoint_at=NOW - since_checkpoint,
        started_at=NOW - age,
    )


def running(snapshot: FleetSnapshot, *jobs: RunningAllocation) -> list[RunningAllocation]:
    for allocation in jobs:
        snapshot.reserve(allocation.claims)
    return list(jobs)


def gpus(snapshot: FleetSnapshot, node: str) -> list[GpuView]:
    return snapshot.nodes[node].gpus


def ask(demand: Demand, *models: str) -> PlacementRequest:
    return PlacementRequest(demand, gpu_models=frozenset(models), priority=CRITICAL)


def fits_without(
    snapshot: FleetSnapshot,
    request: PlacementRequest,
    jobs: Sequence[RunningAllocation],
    ids: Iterable[str],
) -> bool:
    """The reference check: place() on a full copy with those jobs' claims released."""
    chosen = set(ids)
    what_if = snapshot.copy()
    what_if.release([c for a in jobs if a.id in chosen for c in a.claims])
    return place(what_if, request).placement is not None


def chosen(choice: VictimChoice | None) -> set[str]:
    assert choice is not None
    return set(choice.victims)


# -- cost ----------------------------------------------------------------------


def test_lost_work_counts_whole_fraction_and_mig_shares() -> None:
    snapshot = fleet(make_node("h", count=2), make_node("m", "A100-80GB", count=1, mig=True))
    h0, h1 = gpus(snapshot, "h")
    m0 = gpus(snapshot, "m")[0]
    claims = [whole(h0), Claim(h1.id, milli=250, memory_mib=1024), mig_claim(m0, "3g.40gb", 0)]
    assert gpus_held(claims) == pytest.approx(1 + 0.25 + 3 / 7)
    gang = job("g", claims, since_checkpoint=100.0)
    assert lost_work(gang, NOW) == pytest.approx(100 * (1 + 0.25 + 3 / 7))
    assert lost_work(gang, gang.last_checkpoint_at - 5) == 0.0  # a clock behind: nothing lost


def test_recent_checkpoint_beats_lower_priority() -> None:
    snapshot = fleet(make_node("n", count=2))
    g0, g1 = gpus(snapshot, "n")
    jobs = running(
        snapshot,
        job("batch-stale", [whole(g0)], priority=10, since_checkpoint=1800),
        job("normal-fresh", [whole(g1)], priority=50, since_checkpoint=30),
    )
    choice = choose_victims(snapshot, ask(WholeDemand(1)), jobs, NOW)
    assert choice is not None
    assert choice.victims == ("normal-fresh",)
    assert choice.lost_gpu_seconds == pytest.approx(30.0)
    assert choice.placement.claims == (whole(g1),)


def test_fewer_victims_at_equal_cost() -> None:
    snapshot = fleet(make_node("a", count=2), make_node("b", count=2))
    a0, a1 = gpus(snapshot, "a")
    b0, b1 = gpus(snapshot, "b")
    jobs = running(
        snapshot,
        job("a-one", [whole(a0)], since_checkpoint=100),
        job("a-two", [whole(a1)], since_checkpoint=100),
        job("b-pair", [whole(b0), whole(b1)], since_checkpoint=100),
    )
    choice = choose_victims(snapshot, ask(WholeDemand(2)), jobs, NOW)
    assert chosen(choice) == {"b-pair"}


def test_lower_priority_victims_at_equal_cost_and_count() -> None:
    snapshot = fleet(make_node("n", count=2))
    g0, g1 = gpus(snapshot, "n")
    jobs = running(
        snapshot,
        job("normal", [whole(g0)], priority=50, since_checkpoint=100),
        job("batch", [whole(g1)], priority=10, since_checkpoint=100),
    )
    assert chosen(choose_victims(snapshot, ask(WholeDemand(1)), jobs, NOW)) == {"batch"}


# -- eligibility -----------------------------------------------------------------


def test_never_takes_higher_or_equal_priority_unpreemptible_or_protected() -> None:
    snapshot = fleet(make_node("n", count=5))
    g = gpus(snapshot, "n")
    jobs = running(
        snapshot,
        job("higher", [whole(g[0])], priority=CRITICAL + 1, since_checkpoint=0),
        job("equal", [whole(g[1])], priority=CRITICAL, since_checkpoint=0),
        job("pinned", [whole(g[2])], preemptible=False, since_checkpoint=0),
        job("protected", [whole(g[3])], protected_until=NOW + 1, since_checkpoint=0),
        job("stale", [whole(g[4])], since_checkpoint=7200),
    )
    request = ask(WholeDemand(1))
    assert [a.id for a in jobs if is_eligible(a, CRITICAL, NOW)] == ["stale"]
    assert chosen(choose_victims(snapshot, request, jobs, NOW)) == {"stale"}
    assert chosen(choose_victims_naive(snapshot, request, jobs, NOW)) == {"stale"}
    assert choose_victims(snapshot, ask(WholeDemand(2)), jobs, NOW) is None
    assert choose_victims_naive(snapshot, ask(WholeDemand(2)), jobs, NOW) is None


def test_protection_ends_at_its_deadline() -> None:
    snapshot = fleet(make_node("n", count=1))
    jobs = running(snapshot, job("j", [whole(gpus(snapshot, "n")[0])], protected_until=NOW))
    assert chosen(choose_victims(snapshot, ask(WholeDemand(1)), jobs, NOW)) == {"j"}


def test_none_when_impossible() -> None:
    snapshot = fleet(make_node("n", count=4), make_node("m", "A100-80GB", count=1, mig=True))
    g = gpus(snapshot, "n")
    jobs = running(
        snapshot,
        job("small", [whole(g[0])]),
        job("vip", [whole(g[1])], priority=100, preemptible=False),
    )
    assert choose_victims(snapshot, ask(WholeDemand(4)), jobs, NOW) is None  # vip stays
    assert choose_victims(snapshot, ask(WholeDemand(5)), jobs, NOW) is None  # no such node
    assert choose_victims(snapshot, ask(WholeDemand(1), "H200"), jobs, NOW) is None  # no model
    assert choose_victims(snapshot, ask(MigDemand("7g.80gb"), "H100-80GB"), jobs, NOW) is None


def test_no_victims_when_it_fits_already() -> None:
    snapshot = fleet(make_node("n", count=2))
    jobs = running(snapshot, job("j", [whole(gpus(snapshot, "n")[0])]))
    choice = choose_victims(snapshot, ask(WholeDemand(1)), jobs, NOW)
    assert choice is not None
    assert (choice.victims, choice.lost_gpu_seconds) == ((), 0.0)


def test_never_mutates_the_snapshot() -> None:
    snapshot = fleet(make_node("n", count=2))
    g0, g1 = gpus(snapshot, "n")
    jobs = running(snapshot, job("a", [whole(g0)]), job("b", [whole(g1)]))
    before = [(g.id, g.used_milli, g.used_memory_mib) for g in snapshot.gpus.values()]
    choose_victims(snapshot, ask(WholeDemand(2)), jobs, NOW)
    choose_victims_naive(snapshot, ask(WholeDemand(2)), jobs, NOW)
    assert [(g.id, g.used_milli, g.used_memory_mib) for g in snapshot.gpus.values()] == before


# -- gangs -----------------------------------------------------------------------


def test_a_gang_goes_whole_and_costs_whole() -> None:
    snapshot = fleet(make_node("n", count=8))
    g = gpus(snapshot, "n")
    # 4 GPUs x 10 s = 40 GPU-s in all, though only 10 per GPU.
    gang = job("gang", [whole(x) for x in g[:4]], since_checkpoint=10)
    singles = [job(f"s{i}", [whole(g[i])], since_checkpoint=30 + i) for i in range(4, 8)]
    jobs = running(snapshot, gang, *singles)
    assert chosen(choose_victims(snapshot, ask(WholeDemand(1)), jobs, NOW)) == {"s4"}
    choice = choose_victims(snapshot, ask(WholeDemand(5)), jobs, NOW)
    assert chosen(choice) == {"gang", "s4"}
    assert choice is not None and choice.lost_gpu_seconds == pytest.approx(40 + 34)
    assert {c.gpu_id for c in choice.placement.claims} == {x.id for x in g[:5]}


def test_a_gang_spanning_nodes_frees_every_node() -> None:
    snapshot = fleet(make_node("a", count=4), make_node("b", count=4))
    a, b = gpus(snapshot, "a"), gpus(snapshot, "b")
    pipeline = job("pp", [whole(x) for x in a[:2] + b[:2]], since_checkpoint=10)
    jobs = running(
        snapshot,
        pipeline,
        job("a-rest", [whole(x) for x in a[2:]], since_checkpoint=1000),
        job("b-rest", [whole(x) for x in b[2:]], priority=100, preemptible=False),
    )
    choice = choose_victims(snapshot, ask(WholeDemand(2)), jobs, NOW)
    assert chosen(choice) == {"pp"}
    assert choice is not None and choice.lost_gpu_seconds == pytest.approx(40.0)
    assert choose_victims(snapshot, ask(WholeDemand(4)), jobs, NOW) is not None
    assert chosen(choose_victims(snapshot, ask(WholeDemand(4)), jobs, NOW)) == {"pp", "a-rest"}


# -- fractions and MIG -------------------------------------------------------------


def test_fraction_request_takes_the_cheapest_share_that_suffices() -> None:
    snapshot = fleet(make_node("n", count=2))
    g0, g1 = gpus(snapshot, "n")
    half = 40 * 1024
    jobs = running(
        snapshot,
        job("f-stale", [Claim(g0.id, milli=500, memory_mib=half)], since_checkpoint=900),
        job("f-fresh", [Claim(g0.id, milli=500, memory_mib=half)], since_checkpoint=50),
        job("f-small", [Claim(g1.id, milli=100, memory_mib=1024)], since_checkpoint=1),
        job("f-big", [Claim(g1.id, milli=900, memory_mib=70 * 1024)], since_checkpoint=100),
    )
    request = ask(FractionDemand(milli=500, memory_mib=half))
    choice = choose_victims(snapshot, request, jobs, NOW)
    # f-fresh loses 25 GPU-s, f-big 90; f-small alone frees too little.
    assert chosen(choice) == {"f-fresh"}
    assert choice is not None and choice.lost_gpu_seconds == pytest.approx(25.0)
    assert choice.placement.claims == (Claim(g0.id, milli=500, memory_mib=half),)


def test_whole_request_must_clear_every_share_of_a_gpu() -> None:
    snapshot = fleet(make_node("n", count=1))
    g0 = gpus(snapshot, "n")[0]
    jobs = running(
        snapshot,
        job("f1", [Claim(g0.id, milli=300, memory_mib=1024)], since_checkpoint=10),
        job("f2", [Claim(g0.id, milli=300, memory_mib=1024)], since_checkpoint=20),
    )
    assert chosen(choose_victims(snapshot, ask(WholeDemand(1)), jobs, NOW)) == {"f1", "f2"}


def test_mig_request_frees_the_cheapest_aligned_slices() -> None:
    snapshot = fleet(make_node("m", "A100-80GB", count=1, mig=True))
    gpu = gpus(snapshot, "m")[0]
    # Seven 1g instances: slices 0-3 hold cheap ones, 4-6 dear ones (slice 7 is free).
    cheap = [job(f"c{s}", [mig_claim(gpu, "1g.10gb", s)], since_checkpoint=70) for s in range(4)]
    dear = [job(f"d{s}", [mig_claim(gpu, "1g.10gb", s)], since_checkpoint=700) for s in (4, 5, 6)]
    jobs = running(snapshot, *cheap, *dear)
    choice = choose_victims(snapshot, ask(MigDemand("3g.40gb")), jobs, NOW)
    assert chosen(choice) == {"c0", "c1", "c2", "c3"}
    assert choice is not None and choice.lost_gpu_seconds == pytest.approx(4 * 70 / 7)
    assert choice.placement.claims == (mig_claim(gpu, "3g.40gb", 0),)


def test_mig_request_respects_compute_slices_and_profile_counts() -> None:
    snapshot = fleet(make_node("m", "A100-80GB", count=1, mig=True))
    gpu = gpus(snapshot, "m")[0]
    jobs = running(
        snapshot,
        job("left", [mig_claim(gpu, "4g.40gb", 0)], since_checkpoint=5, priority=100,
            preemptible=False),
        job("right", [mig_claim(gpu, "3g.40gb", 4)], since_checkpoint=500),
    )  # fmt: skip
    # 4g + 3g use all 7 compute slices; only the 3g can go, and then a 3g fits.
    choice = choose_victims(snapshot, ask(MigDemand("2g.20gb")), jobs, NOW)
    assert chosen(choice) == {"right"}
    assert choose_victims(snapshot, ask(MigDemand("7g.80gb")), jobs, NOW) is None


# -- never more than needed ----------------------------------------------------------


def test_cheapest_subset_is_exact_and_its_fallback_prunes() -> None:
    sizes = [1, 1, 1, 5, 6]

    def fits(mask: int) -> bool:
        return sum(s for k, s in enumerate(sizes) if mask >> k & 1) >= 6

    costs, priorities = [1.0, 2.0, 3.0, 10.0, 12.0], [0] * 5
    assert cheapest_subset(costs, priorities, fits) == 0b01001  # 1 + 10 beats 12 and 1+2+3+10
    assert cheapest_subset([1.0, 2.0, 3.0, 10.0, 11.0], priorities, fits) == 0b10000  # fewer
    # The greedy fallback adds the cheap ones first, then drops what is not needed.
    assert cheapest_subset(costs, priorities, fits, max_steps=0) == 0b01001
    assert cheapest_subset(costs, priorities, lambda mask: False) is None


def test_naive_takes_more_than_needed_and_loses_more() -> None:
    snapshot = fleet(make_node("a", count=2), make_node("b", count=2))
    a0, a1 = gpus(snapshot, "a")
    b0, b1 = gpus(snapshot, "b")
    jobs = running(
        snapshot,
        # Youngest batch job first: it alone frees one GPU, not the two asked for.
        job("young", [whole(a0)], age=60, since_checkpoint=60),
        job("old-pair", [whole(b0), whole(b1)], age=7200, since_checkpoint=1200),
        job("fresh-normal", [whole(a1)], priority=50, age=9000, since_checkpoint=5),
    )
    request = ask(WholeDemand(2))
    naive = choose_victims_naive(snapshot, request, jobs, NOW)
    ours = choose_victims(snapshot, request, jobs, NOW)
    assert chosen(naive) == {"young", "old-pair"}
    assert chosen(ours) == {"young", "fresh-normal"}
    assert naive is not None and ours is not None
    assert ours.lost_gpu_seconds == pytest.approx(65.0)
    assert naive.lost_gpu_seconds == pytest.approx(60 + 2400)
    # Naive keeps "young" though "old-pair" alone would do.
    assert fits_without(snapshot, request, jobs, {"old-pair"})


def _random_case(
    rng: random.Random,
) -> tuple[FleetSnapshot, list[RunningAllocation], PlacementRequest]:
    snapshot = fleet(
        make_node("a", count=4),
        make_node("b", count=4),
        make_node("c", "H200", count=2),
        make_node("m", "A100-80GB", count=2, mig=True),
    )
    jobs: list[RunningAllocation] = []
    for n in range(40):
        demands: list[Demand] = [
            WholeDemand(rng.choice((1, 1, 2, 4))),
            FractionDemand(rng.choice((250, 500)), rng.choice((10, 30)) * 1024),
            MigDemand(rng.choice(("1g.10gb", "2g.20gb", "3g.40gb"))),
        ]
        demand = rng.choice(demands)
        placement = place(snapshot, PlacementRequest(demand)).placement
        if placement is None:
            continue
        claims = list(placement.claims)
        if rng.random() < 0.15:  # now and then a gang over two placements
            other = place(snapshot, PlacementRequest(WholeDemand(1))).placement
            if other is not None and other.node != placement.node:
                claims += other.claims
        jobs.append(
            job(
                f"j{n}",
                claims,
                priority=rng.choice((10, 10, 50, 100)),
                preemptible=rng.random() < 0.9,
                since_checkpoint=rng.uniform(0, 3600),
                age=rng.uniform(3600, 7200),
                protected_until=NOW + 1 if rng.random() < 0.1 else 0.0,
            )
        )
        snapshot.reserve(claims)
    wanted: list[Demand] = [
        WholeDemand(rng.choice((1, 2, 4))),
        FractionDemand(500, 40 * 1024),
        MigDemand(rng.choice(("2g.20gb", "3g.40gb", "7g.80gb"))),
    ]
    request = ask(rng.choice(wanted))
    return snapshot, jobs, request


@pytest.mark.parametrize("seed", range(25))
def test_matches_brute_force_and_needs_every_victim(seed: int) -> None:
    snapshot, jobs, request = _random_case(random.Random(seed))
    pool = [a for a in jobs if a.priority < CRITICAL and a.preemptible and a.protected_until <= NOW]
    pool = [a for a in pool if a.priority < 100][:10]  # keep the brute force small
    jobs = [a for a in jobs if a in pool or not is_eligible(a, CRITICAL, NOW)]
    best: tuple[float, int, int] | None = None
    for size in range(len(pool) + 1):
        for subset in itertools.combinations(pool, size):
            if fits_without(snapshot, request, jobs, (a.id for a in subset)):
                key = (
                    sum(lost_work(a, NOW) for a in subset),
                    size,
                    sum(a.priority for a in subset),
                )
                best = key if best is None else min(best, key)
    choice = choose_victims(snapshot, request, jobs, NOW)
    if best is None:
        assert choice is None
        assert choose_victims_naive(snapshot, request, jobs, NOW) is None
        return
    assert choice is not None
    victims = [a for a in jobs if a.id in choice.victims]
    assert choice.lost_gpu_seconds == pytest.approx(best[0])
    assert (len(victims), sum(a.priority for a in victims)) == best[1:]
    assert fits_without(snapshot, request, jobs, choice.victims)
    for spared in choice.victims:
        assert not fits_without(snapshot, request, jobs, set(choice.victims) - {spared})
    naive = choose_victims_naive(snapshot, request, jobs, NOW)
    assert naive is not None and fits_without(snapshot, request, jobs, naive.victims)
    assert naive.lost_gpu_seconds >= choice.lost_gpu_seconds - 1e-6


def test_a_layout_larger_than_any_node_preempts_across_nodes() -> None:
    snapshot = fleet(make_node("a", count=4), make_node("b", count=4), make_node("c", count=4))
    a, b, c = gpus(snapshot, "a"), gpus(snapshot, "b"), gpus(snapshot, "c")
    jobs = running(
        snapshot,
        job("a-old", [whole(x) for x in a[:3]], since_checkpoint=1000),
        job("b-fresh", [whole(x) for x in b[:3]], since_checkpoint=10),
        job("c-fresh", [whole(x) for x in c[:3]], since_checkpoint=20),
    )
    # tp=4 pp=2: two 4-GPU stages on two nodes. One free GPU per node is not enough.
    layout = ParallelLayout(tp=4, pp=2)
    request = PlacementRequest(WholeDemand(8), priority=CRITICAL, layout=layout)
    choice = choose_victims(snapshot, request, jobs, NOW)
    assert chosen(choice) == {"b-fresh", "c-fresh"}  # the two cheapest; a-old is spared
    assert choice is not None
    assert {snapshot.gpus[x.gpu_id].node for x in choice.placement.claims} == {"b", "c"}
    assert fits_without(snapshot, request, jobs, choice.victims)
    # One 4-GPU stage already fits on a free node: only one victim is needed.
    snapshot = fleet(make_node("a", count=4), make_node("b", count=4), make_node("free", count=4))
    a, b = gpus(snapshot, "a"), gpus(snapshot, "b")
    jobs = running(
        snapshot,
        job("a-old", [whole(x) for x in a[:1]], since_checkpoint=1000),
        job("b-fresh", [whole(x) for x in b[:1]], since_checkpoint=10),
    )
    assert chosen(choose_victims(snapshot, request, jobs, NOW)) == {"b-fresh"}
