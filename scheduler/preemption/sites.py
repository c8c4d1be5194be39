"""Sites: the places a request could land once some allocations are gone.

place() never splits a request: whole GPUs land on one node (all of one
model), a fraction or a MIG slice on one GPU. So the search for victims is a
search over sites. A site carries a lower bound on what clearing it costs,
cheap to compute for the whole fleet; only the few sites the search opens list
their holders and answer, for any subset of them, whether clearing that subset
makes room (mirroring place()'s filters).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from scheduler.domain.catalogue import MigProfile
from scheduler.domain.fleet import Claim, FleetSnapshot, GpuView
from scheduler.domain.mig import best_start, candidate_masks, profile_for
from scheduler.domain.requests import (
    FractionDemand,
    MigDemand,
    PlacementRequest,
    WholeDemand,
)

# (index into the victim pool, one claim of that allocation)
Holding = tuple[int, Claim]
Holdings = Mapping[int, list[Holding]]  # by GPU id


@dataclass(frozen=True)
class OpenSite:
    holders: tuple[int, ...]  # victim pool indexes, sorted by (cost, priority)
    fits: Callable[[int], bool]  # bitmask over `holders` -> does clearing them make room


@dataclass(frozen=True)
class Site:
    lower_bound: float  # no subset that makes room here costs less
    open: Callable[[], OpenSite]  # deferred: most sites are never opened


def usable_gpus(snapshot: FleetSnapshot, request: PlacementRequest) -> set[int]:
    """GPUs passing place()'s filters that no preemption changes.

    Those are health, cordon, model, MIG mode and (for MIG) the profile.
    """
    allowed = request.gpu_models or snapshot.structure.models
    demand = request.demand
    if not isinstance(demand, MigDemand):
        return {
            gpu.id
            for node in snapshot.nodes.values()
            if node.schedulable
            for gpu in node.gpus
            if gpu.healthy and not gpu.mig_enabled and gpu.model in allowed
        }
    models = {m for m in allowed if profile_for(m, demand.profile) is not None}
    return {
        gpu.id
        for node in snapshot.nodes.values()
        if node.schedulable
        for gpu in node.gpus
        if gpu.healthy and gpu.mig_enabled and gpu.model in models
    }


def may_fit_now(snapshot: FleetSnapshot, request: PlacementRequest) -> bool:
    """False only when place() would fail: it walks these same indexes.

    Saves the fleet-wide scan with which a failing place() explains itself.
    """
    allowed = request.gpu_models
    models = sorted(snapshot.structure.models & allowed if allowed else snapshot.structure.models)
    demand = request.demand
    if isinstance(demand, WholeDemand):
        return next(snapshot.iter_whole_candidates(models, max(1, demand.count)), None) is not None
    if isinstance(demand, FractionDemand):
        return any(
            gpu.free_milli >= demand.milli
            for gpu in snapshot.iter_fraction_gpus(models, demand.memory_mib)
        )
    for model in models:
        profile = profile_for(model, demand.profile)
        if profile is None:
            continue
        for gpu in snapshot.iter_mig_gpus((model,), candidate_masks(profile)):
            used = (gpu.mig_used_mask, gpu.mig_used_compute, gpu.mig_profile_counts)
            if best_start(profile, *used) is not None:
                return True
    return False


def find_sites(
    snapshot: FleetSnapshot,
    request: PlacementRequest,
    holdings: Holdings,
    costs: Sequence[float],
    priorities: Sequence[int],
) -> list[Site]:
    """The sites that clearing eligible holders might open.

    `holdings` must hold only GPUs in usable_gpus(). A site that fits with
    no victim at all is not listed: place() would have found it.
    """
    demand = request.demand
    ranked = partial(_Ranked, costs, priorities)
    if isinstance(demand, WholeDemand):
        return _whole_sites(snapshot, demand.count, holdings, costs, ranked)
    if isinstance(demand, FractionDemand):
        return _fraction_sites(snapshot, demand, holdings, costs, ranked)
    return _mig_sites(snapshot, demand, holdings, costs, ranked)


class _Ranked:
    """Pool indexes cheapest first, and each one's bit in a subset mask."""

    def __init__(
        self, costs: Sequence[float], priorities: Sequence[int], indexes: Iterable[int]
    ) -> None:
        self.holders = tuple(sorted(indexes, key=lambda i: (costs[i], priorities[i], i)))
        self.bit = {h: 1 << k for k, h in enumerate(self.holders)}


Ranker = Callable[[Iterable[int]], _Ranked]


# -- whole GPUs: one node, GPUs of one model -----------------------------------


def _whole_sites(
    snapshot: FleetSnapshot, count: int, holdings: Holdings, costs: Sequence[float], rank: Ranker
) -> list[Site]:
    # Per (node, model): the GPUs that clearing eligible holders would empty, and
    # what clearing each alone costs.
    groups: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
    gpus = snapshot.gpus
    for gpu_id, held in holdings.items():
        gpu = gpus[gpu_id]
        if len(held) == 1:  # the common case: one whole-GPU claim
            index, claim = held[0]
            milli, memory, cost = claim.milli, claim.memory_mib, costs[index]
        else:
            milli = sum(c.milli for _, c in held)
            memory = sum(c.memory_mib for _, c in held)
            cost = sum(costs[i] for i in {i for i, _ in held})
        # Only a GPU whose every user is eligible can be emptied.
        if milli == gpu.used_milli and memory == gpu.used_memory_mib:
            ids, gpu_costs = groups.setdefault((gpu.node, gpu.model), ([], []))
            ids.append(gpu_id)
            gpu_costs.append(cost)
    sites: list[Site] = []
    for (node, model), (ids, gpu_costs) in groups.items():
        need = count - snapshot.free_whole_gpus(model, node)
        if need <= 0 or len(ids) < need:
            continue
        # Any `need` GPUs cost at least the dearest of them alone.
        lower_bound = min(gpu_costs) if need == 1 else sorted(gpu_costs)[need - 1]
        sites.append(Site(lower_bound, partial(_open_whole, holdings, ids, need, rank)))
    return sites


def _open_whole(holdings: Holdings, gpu_ids: list[int], need: int, rank: Ranker) -> OpenSite:
    users = [{i for i, _ in holdings[g]} for g in gpu_ids]
    ranked = rank(set().union(*users))
    masks = tuple(sum(ranked.bit[i] for i in u) for u in users)
    return OpenSite(ranked.holders, partial(_enough_gpus, masks, need))


def _enough_gpus(masks: tuple[int, ...], need: int, chosen: int) -> bool:
    """At least `need` GPUs have all their users in `chosen`."""
    return sum(1 for users in masks if not users & ~chosen) >= need


# -- fractions: one GPU --------------------------------------------------------


def _fraction_sites(
    snapshot: FleetSnapshot,
    demand: FractionDemand,
    holdings: Holdings,
    costs: Sequence[float],
    rank: Ranker,
) -> list[Site]:
    sites: list[Site] = []
    for gpu_id, held in holdings.items():
        gpu = snapshot.gpus[gpu_id]
        milli_short = demand.milli - gpu.free_milli
        memory_short = demand.memory_mib - gpu.free_memory_mib
        if sum(c.milli for _, c in held) < milli_short:
            continue
        if sum(c.memory_mib for _, c in held) < memory_short:
            continue
        lower_bound = min(costs[i] for i, _ in held)
        sites.append(
            Site(lower_bound, partial(_open_fraction, held, milli_short, memory_short, rank))
        )
    return sites


def _open_fraction(
    held: list[Holding], milli_short: int, memory_short: int, rank: Ranker
) -> OpenSite:
    freed: dict[int, tuple[int, int]] = {}
    for i, claim in held:
        milli, memory = freed.get(i, (0, 0))
        freed[i] = (milli + claim.milli, memory + claim.memory_mib)
    ranked = rank(freed)
    millis = tuple(freed[h][0] for h in ranked.holders)
    memories = tuple(freed[h][1] for h in ranked.holders)
    fits = partial(_enough_share, millis, memories, milli_short, memory_short)
    return OpenSite(ranked.holders, fits)


def _enough_share(
    millis: tuple[int, ...],
    memories: tuple[int, ...],
    milli_short: int,
    memory_short: int,
    chosen: int,
) -> bool:
    milli = memory = 0
    for k, (m, mem) in enumerate(zip(millis, memories, strict=True)):
        if chosen >> k & 1:
            milli += m
            memory += mem
    return milli >= milli_short and memory >= memory_short


# -- MIG: one GPU in MIG mode --------------------------------------------------


def _mig_sites(
    snapshot: FleetSnapshot,
    demand: MigDemand,
    holdings: Holdings,
    costs: Sequence[float],
    rank: Ranker,
) -> list[Site]:
    sites: list[Site] = []
    for gpu_id, held in holdings.items():
        gpu = snapshot.gpus[gpu_id]
        profile = profile_for(gpu.model, demand.profile)
        assert profile is not None  # usable_gpus() checked
        # Whether clearing every holder is enough is left to the search (it asks first).
        lower_bound = min(costs[i] for i, _ in held)
        sites.append(Site(lower_bound, partial(_open_mig, gpu, profile, held, rank)))
    return sites


def _open_mig(gpu: GpuView, profile: MigProfile, held: list[Holding], rank: Ranker) -> OpenSite:
    instances: dict[int, list[Claim]] = {}
    for i, claim in held:
        instances.setdefault(i, []).append(claim)
    ranked = rank(instances)
    per_holder = tuple(tuple(instances[h]) for h in ranked.holders)
    return OpenSite(ranked.holders, partial(_mig_room, gpu, profile, per_holder))


def _mig_room(
    gpu: GpuView, profile: MigProfile, per_holder: tuple[tuple[Claim, ...], ...], chosen: int
) -> bool:
    """Would `profile` have a free start once the chosen holders' instances are gone?"""
    mask = gpu.mig_used_mask
    compute = gpu.mig_used_compute
    counts = dict(gpu.mig_profile_counts)
    for k, claims in enumerate(per_holder):
        if chosen >> k & 1:
            for claim in claims:
                mask &= ~(((1 << claim.mig_size) - 1) << (claim.mig_start or 0))
                compute -= claim.mig_compute
                name = claim.mig_profile or ""
                counts[name] = counts.get(name, 0) - 1
    return best_start(profile, mask, compute, counts) is not None
