"""Which running allocations to preempt so that a request fits: pure, no I/O.

choose_victims() minimises the work thrown away: GPU-seconds since each
victim's last checkpoint, then the number of victims, then their priority. It
searches sites (sites.py): the one node or GPU the request would land on. Each
site gets a cheap lower bound; sites are opened in lower-bound order and
solved exactly (cheapest.py) until no unopened site could beat the best
answer, which is then checked with place() and pruned.

choose_victims_naive() is the baseline many schedulers roughly follow: lowest
priority first, youngest first, until the request fits, with no pruning.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from scheduler.domain.fleet import Claim, FleetSnapshot
from scheduler.domain.requests import PlacementRequest
from scheduler.placement import Placement, PlacementConfig, place
from scheduler.preemption.cheapest import cheapest_subset
from scheduler.preemption.running import RunningAllocation, is_eligible, lost_work
from scheduler.preemption.sites import Holding, find_sites, may_fit_now, usable_gpus

DEFAULT_CONFIG = PlacementConfig()


@dataclass(frozen=True)
class VictimChoice:
    victims: tuple[str, ...]  # allocation ids, sorted; empty when the request fits as it is
    # Where the request lands once the victims are gone: place() on the fleet
    # with their claims released (its score is relative to the nodes they touch).
    placement: Placement
    lost_gpu_seconds: float  # sum of lost_work() over the victims


def choose_victims(
    snapshot: FleetSnapshot,
    request: PlacementRequest,
    running: Sequence[RunningAllocation],
    now: float,
    config: PlacementConfig = DEFAULT_CONFIG,
) -> VictimChoice | None:
    """The cheapest set of eligible allocations whose preemption lets `request` fit, else None.

    Eligible: lower priority than the request, preemptible and past its
    minimum-runtime protection. An allocation goes whole or not at all, on
    every GPU it holds. No victim of the answer can be spared. `running` must
    match the snapshot: each claim is held there. Never mutates anything.
    """
    if request.layout is not None or may_fit_now(snapshot, request):
        outcome = place(snapshot, request, config)
        if outcome.placement is not None:
            return VictimChoice((), outcome.placement, 0.0)
    pool, holdings = _eligible_holdings(snapshot, request, running, now)
    costs = [lost_work(a, now) for a in pool]
    priorities = [a.priority for a in pool]
    sites = find_sites(snapshot, request, holdings, costs, priorities)
    # Sequence numbers keep the heaps from ever comparing sites or victim tuples.
    order = itertools.count()
    unopened = [(site.lower_bound, next(order), site) for site in sites]
    heapq.heapify(unopened)
    answers: list[tuple[float, int, int, int, tuple[int, ...]]] = []
    while unopened or answers:
        # An answer is final once no unopened site can be cheaper; on a tie open
        # the site, which may need fewer victims.
        if answers and (not unopened or answers[0][0] < unopened[0][0]):
            victims = heapq.heappop(answers)[-1]
            choice = _verified(snapshot, request, pool, costs, victims, config)
            if choice is not None:
                return choice
            continue
        site = heapq.heappop(unopened)[-1].open()
        mask = cheapest_subset(
            [costs[h] for h in site.holders], [priorities[h] for h in site.holders], site.fits
        )
        if mask is None:
            continue
        victims = tuple(h for k, h in enumerate(site.holders) if mask >> k & 1)
        key = (sum(costs[v] for v in victims), len(victims), sum(priorities[v] for v in victims))
        heapq.heappush(answers, (*key, next(order), victims))
    if request.layout is not None:
        return _gang_victims(snapshot, request, pool, costs, config)
    return None


def _gang_victims(
    snapshot: FleetSnapshot,
    request: PlacementRequest,
    pool: Sequence[RunningAllocation],
    costs: Sequence[float],
    config: PlacementConfig,
) -> VictimChoice | None:
    """A layout may span nodes, which the one-node sites cannot express: take
    eligible holders cheapest per GPU freed first until the gang fits, then
    drop every victim it can do without (_verified)."""
    order = sorted(
        range(len(pool)),
        key=lambda i: (costs[i] / max(1, len(pool[i].claims)), pool[i].priority, pool[i].id),
    )
    first = _shortest_fitting_prefix(
        len(order),
        lambda k: _place_without(snapshot, request, _claims_of(pool[i] for i in order[:k]), config),
    )
    if first is None:
        return None
    return _verified(snapshot, request, pool, costs, tuple(order[: first[0]]), config)


def choose_victims_naive(
    snapshot: FleetSnapshot,
    request: PlacementRequest,
    running: Sequence[RunningAllocation],
    now: float,
    config: PlacementConfig = DEFAULT_CONFIG,
) -> VictimChoice | None:
    """Baseline: eligible allocations, lowest priority then youngest first, until it fits.

    Only allocations on GPUs the request could use are considered (no
    scheduler evicts work from hardware the request cannot run on), and the
    victims are not pruned.
    """
    outcome = place(snapshot, request, config)
    if outcome.placement is not None:
        return VictimChoice((), outcome.placement, 0.0)
    if outcome.unschedulable:
        return None
    usable = usable_gpus(snapshot, request)
    order = sorted(
        (
            a
            for a in running
            if is_eligible(a, request.priority, now) and any(c.gpu_id in usable for c in a.claims)
        ),
        key=lambda a: (a.priority, -a.started_at, a.id),
    )
    first = _shortest_fitting_prefix(
        len(order),
        lambda k: _place_without(snapshot, request, _claims_of(order[:k]), config),
    )
    if first is None:
        return None
    taken, placement = first
    victims = order[:taken]
    return VictimChoice(
        tuple(sorted(a.id for a in victims)), placement, sum(lost_work(a, now) for a in victims)
    )


def _eligible_holdings(
    snapshot: FleetSnapshot,
    request: PlacementRequest,
    running: Sequence[RunningAllocation],
    now: float,
) -> tuple[list[RunningAllocation], dict[int, list[Holding]]]:
    """Eligible allocations on GPUs that could host the request, and what each holds there.

    The holdings are by GPU id and name allocations by their index in the first list.
    """
    pool: list[RunningAllocation] = []
    holdings: dict[int, list[Holding]] = {}
    eligible = [a for a in running if is_eligible(a, request.priority, now)]
    if not eligible:
        return pool, holdings  # skips the fleet-wide scan of usable GPUs
    usable = usable_gpus(snapshot, request)
    for allocation in eligible:
        index = len(pool)
        for claim in allocation.claims:
            if claim.gpu_id in usable:
                holdings.setdefault(claim.gpu_id, []).append((index, claim))
                if len(pool) == index:
                    pool.append(allocation)
    return pool, holdings


def _verified(
    snapshot: FleetSnapshot,
    request: PlacementRequest,
    pool: Sequence[RunningAllocation],
    costs: Sequence[float],
    victims: tuple[int, ...],
    config: PlacementConfig,
) -> VictimChoice | None:
    """Check `victims` with place(), then drop every victim the request can do without.

    A site's answer is exact for that site, but a victim's claims elsewhere (a
    gang over several nodes) can open another site that needs fewer victims.
    """
    chosen = list(victims)
    placement = _place_without(snapshot, request, _claims_of(pool[i] for i in chosen), config)
    if placement is None:
        return None
    for victim in sorted(victims, key=lambda i: -costs[i]):
        rest = [i for i in chosen if i != victim]
        trial = _place_without(snapshot, request, _claims_of(pool[i] for i in rest), config)
        if trial is not None:
            chosen, placement = rest, trial
    return VictimChoice(
        tuple(sorted(pool[i].id for i in chosen)), placement, sum(costs[i] for i in chosen)
    )


def _claims_of(allocations: Iterable[RunningAllocation]) -> list[Claim]:
    return [claim for allocation in allocations for claim in allocation.claims]


def _place_without(
    snapshot: FleetSnapshot,
    request: PlacementRequest,
    claims: Sequence[Claim],
    config: PlacementConfig,
) -> Placement | None:
    """place() on the fleet with `claims` released, for a request that does not fit now.

    Only the nodes those claims touch change, and whether a request fits a
    node depends on that node alone, so a fleet of just those nodes (copied)
    gives the same answer as a copy of the whole snapshot, at a fraction of
    the cost of copying 10,000 GPUs. A parallel layout is the exception: its
    stages may also take idle GPUs on nodes no victim touches, so it gets the
    whole fleet.
    """
    if request.layout is not None:
        whole_fleet = snapshot.copy()
        whole_fleet.release(claims)
        return place(whole_fleet, request, config).placement
    what_if = FleetSnapshot()
    for name in dict.fromkeys(snapshot.gpus[c.gpu_id].node for c in claims):
        what_if.upsert_node(snapshot.nodes[name])
    what_if.release(claims)
    return place(what_if, request, config).placement


def _shortest_fitting_prefix(
    count: int, placed: Callable[[int], Placement | None]
) -> tuple[int, Placement] | None:
    """The fewest leading victims after which the request fits, with its placement.

    Releasing more never makes a fit fail, so doubling then bisecting finds the
    same prefix as adding victims one at a time, with log(count) placements.
    """
    results: dict[int, Placement | None] = {}

    def fits(taken: int) -> bool:
        if taken not in results:
            results[taken] = placed(taken)
        return results[taken] is not None

    short, enough = 0, min(1, count)
    while not fits(enough):
        if enough == count:
            return None
        short, enough = enough, min(2 * enough, count)
    while enough - short > 1:
        middle = (short + enough) // 2
        if fits(middle):
            enough = middle
        else:
            short = middle
    found = results[enough]
    assert found is not None
    return enough, found
