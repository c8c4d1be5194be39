"""Sites: the places a request could land once some allocations are gone.

place() never splits a request: whole GPUs land on one node (all of one
model), a fraction or a MIG slice on one GPU. So the search for victims is a
search over sites. A site lists the eligible allocations holding parts of it
and answers, for any subset of them, whether clearing that subset makes room,
mirroring place()'s filters; it also carries a lower bound on what clearing it
costs, so that most of the fleet is never looked at closely.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from scheduler.domain.catalogue import MigProfile
from scheduler.domain.fleet import Claim, FleetSnapshot, GpuView
from scheduler.domain.mig import best_start, profile_for
from scheduler.domain.requests import (
    FractionDemand,
    MigDemand,
    PlacementRequest,
    WholeDemand,
)

# (index into the victim pool, one claim of that allocation)
Holding = tuple[int, Claim]


@dataclass(frozen=True)
class Site:
    lower_bound: float  # no subset that makes room here costs less
    holders: tuple[int, ...]  # victim pool indexes, sorted by (cost, priority)
    fits: Callable[[int], bool]  # bitmask over `holders` -> does clearing them make room


def can_host(snapshot: FleetSnapshot, request: PlacementRequest) -> Callable[[GpuView], bool]:
    """place()'s filters that no preemption changes: health, cordon, model, MIG mode, profile."""
    allowed = request.gpu_models
    demand = request.demand
    profile = demand.profile if isinstance(demand, MigDemand) else None
    nodes = snapshot.nodes

    def check(gpu: GpuView) -> bool:
        if not gpu.healthy or gpu.mig_enabled != (profile is not None):
            return False
        if allowed and gpu.model not in allowed:
            return False
        if profile is not None and profile_for(gpu.model, profile) is None:
            return False
        return nodes[gpu.node].schedulable

    return check


def find_sites(
    snapshot: FleetSnapshot,
    request: PlacementRequest,
    holdings: Mapping[int, list[Holding]],
    costs: Sequence[float],
    priorities: Sequence[int],
) -> list[Site]:
    """Every site that clearing its eligible holders would open; `holdings` is keyed by GPU id.

    `holdings` must hold only GPUs that pass can_host(). A site that fits with
    no victim at all is not listed: place() would have found it.
    """
    demand = request.demand
    rank = partial(_cheapest_first, costs, priorities)
    if isinstance(demand, WholeDemand):
        return _whole_sites(snapshot, demand, holdings, costs, rank)
    if isinstance(demand, FractionDemand):
        return _fraction_sites(snapshot, demand, holdings, costs, rank)
    return _mig_sites(snapshot, demand, holdings, costs, rank)


Rank = Callable[[Iterable[int]], tuple[int, ...]]


def _cheapest_first(
    costs: Sequence[float], priorities: Sequence[int], indexes: Iterable[int]
) -> tuple[int, ...]:
    return tuple(sorted(indexes, key=lambda i: (costs[i], priorities[i], i)))


# -- whole GPUs: one node, GPUs of one model -----------------------------------


def _whole_sites(
    snapshot: FleetSnapshot,
    demand: WholeDemand,
    holdings: Mapping[int, list[Holding]],
    costs: Sequence[float],
    rank: Rank,
) -> list[Site]:
    groups: dict[tuple[str, str], list[set[int]]] = {}
    for gpu_id, held in holdings.items():
        gpu = snapshot.gpus[gpu_id]
        # Only a GPU whose every user is eligible can be emptied.
        if sum(c.milli for _, c in held) == gpu.used_milli and (
            sum(c.memory_mib for _, c in held) == gpu.used_memory_mib
        ):
            groups.setdefault((gpu.node, gpu.model), []).append({i for i, _ in held})
    sites: list[Site] = []
    for (node, model), per_gpu in groups.items():
        need = demand.count - snapshot.free_whole_gpus(model, node)
        if need <= 0 or len(per_gpu) < need:
            continue
        holders = rank(set().union(*per_gpu))
        bit = {h: 1 << k for k, h in enumerate(holders)}
        masks = tuple(sum(bit[i] for i in users) for users in per_gpu)
        # Any `need` GPUs cost at least the dearest of them alone.
        lower_bound = sorted(sum(costs[i] for i in users) for users in per_gpu)[need - 1]
        sites.append(Site(lower_bound, holders, partial(_enough_gpus, masks, need)))
    return sites


def _enough_gpus(masks: tuple[int, ...], need: int, chosen: int) -> bool:
    """At least `need` GPUs have all their users in `chosen`."""
    return sum(1 for users in masks if not users & ~chosen) >= need


# -- fractions: one GPU --------------------------------------------------------


def _fraction_sites(
    snapshot: FleetSnapshot,
    demand: FractionDemand,
    holdings: Mapping[int, list[Holding]],
    costs: Sequence[float],
    rank: Rank,
) -> list[Site]:
    sites: list[Site] = []
    for gpu_id, held in holdings.items():
        gpu = snapshot.gpus[gpu_id]
        milli_short = demand.milli - gpu.free_milli
        memory_short = demand.memory_mib - gpu.free_memory_mib
        freed: dict[int, tuple[int, int]] = {}
        for i, claim in held:
            milli, memory = freed.get(i, (0, 0))
            freed[i] = (milli + claim.milli, memory + claim.memory_mib)
        if sum(m for m, _ in freed.values()) < milli_short:
            continue
        if sum(m for _, m in freed.values()) < memory_short:
            continue
        holders = rank(freed)
        millis = tuple(freed[h][0] for h in holders)
        memories = tuple(freed[h][1] for h in holders)
        fits = partial(_enough_share, millis, memories, milli_short, memory_short)
        sites.append(Site(costs[holders[0]], holders, fits))
    return sites


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
    holdings: Mapping[int, list[Holding]],
    costs: Sequence[float],
    rank: Rank,
) -> list[Site]:
    sites: list[Site] = []
    for gpu_id, held in holdings.items():
        gpu = snapshot.gpus[gpu_id]
        profile = profile_for(gpu.model, demand.profile)
        assert profile is not None  # can_host() checked
        instances: dict[int, list[Claim]] = {}
        for i, claim in held:
            instances.setdefault(i, []).append(claim)
        holders = rank(instances)
        per_holder = tuple(tuple(instances[h]) for h in holders)
        fits = partial(_mig_room, gpu, profile, per_holder)
        if fits((1 << len(holders)) - 1):
            sites.append(Site(costs[holders[0]], holders, fits))
    return sites


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
