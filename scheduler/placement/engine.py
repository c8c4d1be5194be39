"""place(): walk the snapshot's indexes best fit first, filter, score, pick.

The walk stops after PlacementConfig.feasible_to_score feasible options (as
kube-scheduler's numFeasibleNodesToFind does), so a successful placement costs
a handful of candidates, not a scan of the fleet. Only when nothing is
feasible does explain.py scan everything to say why.

That walk is the "default" packing policy. Any other (PlacementConfig.
packing_policy: fgd, bestfit, ...) must compare every feasible node, so
fractional, whole-GPU and host-only requests go to packing.py, which scores
each class of identically loaded nodes once; MIG requests keep the walk above.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from scheduler.domain.catalogue import MigProfile
from scheduler.domain.fleet import Claim, FleetSnapshot
from scheduler.domain.mig import best_start, candidate_masks, profile_for, room_score
from scheduler.domain.requests import (
    Demand,
    FractionDemand,
    MigDemand,
    PlacementRequest,
    WholeDemand,
)
from scheduler.placement.explain import UNSCHEDULABLE, explain, unschedulable_reason
from scheduler.placement.fragmentation import RequestMix
from scheduler.placement.nvlink import choose_gpus
from scheduler.placement.packing import PolicyState, place_by_policy
from scheduler.placement.pipeline import (
    Pipeline,
    first_rejection,
    node_rejection,
    passing_gpus,
    pipeline_for,
)
from scheduler.placement.plugins import DEFAULT_SCORE_WEIGHTS, CycleContext, Option


@dataclass(frozen=True)
class Rejection:
    plugin: str  # the filter plugin's name, e.g. "FractionFits"
    reason: str  # human text, e.g. "not enough free memory (needs 30000 MiB, ...)"
    count: int  # how many candidates (GPUs or nodes) it rejected


@dataclass(frozen=True)
class Placement:
    node: str
    claims: tuple[Claim, ...]
    score: float


@dataclass(frozen=True)
class PlacementOutcome:
    placement: Placement | None
    # Empty when placed. Sorted by count, largest first; when unschedulable, only
    # the "Unschedulable" reason (count 0: it judges the fleet, not candidates).
    reasons: tuple[Rejection, ...] = ()
    unschedulable: bool = False  # True iff no GPU or node of this fleet could ever hold it


@dataclass(frozen=True)
class PlacementConfig:
    # Stop walking after this many feasible options (kube-scheduler's numFeasibleNodesToFind).
    feasible_to_score: int = 16
    # Weight per score plugin name; a plugin missing here does not score.
    score_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SCORE_WEIGHTS))
    # How fractional and whole-GPU requests are packed: "default" (the best-fit walk
    # above) or a policy that scores every feasible node (policies.POLICY_NAMES).
    packing_policy: str = "default"
    # FGD's observed request mix (fgd, fgd+bf), recorded into by whoever sees requests.
    request_mix: RequestMix | None = None
    # Ties between equal policy scores go to the lowest rank here (else the smallest name).
    node_order: Mapping[str, int] | None = None
    seed: int = 0  # the random policy's draws
    # False: a policy's failed placement skips counting reasons (a simulator reads none).
    explain_failures: bool = True
    # The policy's scorer and memo, kept across place() calls made with this config.
    policy_state: PolicyState | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.policy_state is None:
            state = PolicyState(self.packing_policy, self.request_mix, self.seed)
            object.__setattr__(self, "policy_state", state)


def config_for_policy(policy: str) -> PlacementConfig:
    """A live config for a packing policy; FGD starts from an empty request mix that the
    allocator records each new request into (until then every node ties, by name)."""
    mix = RequestMix() if policy.startswith("fgd") else None
    return PlacementConfig(packing_policy=policy, request_mix=mix)


def place(
    snapshot: FleetSnapshot, request: PlacementRequest, config: PlacementConfig = PlacementConfig()
) -> PlacementOutcome:
    """The best placement for `request` on `snapshot`, or why there is none. Never mutates."""
    ctx = CycleContext(snapshot, request)
    pipeline = pipeline_for(request.demand, bool(request.cpu_milli or request.host_memory_mib))
    state = config.policy_state
    if state is not None and (
        request.host_only
        or (config.packing_policy != "default" and not isinstance(request.demand, MigDemand))
    ):
        return _place_by_policy(ctx, pipeline, state, config)
    limit = max(1, config.feasible_to_score)
    options: list[Option] = []
    for option in _feasible_options(ctx, pipeline):
        options.append(option)
        if len(options) >= limit:
            break
    if not options:
        tally, unschedulable = explain(ctx, pipeline)
        reasons = tuple(Rejection(plugin, reason, count) for plugin, reason, count in tally)
        return PlacementOutcome(None, reasons, unschedulable)
    best, score = _best(ctx, pipeline, options, config.score_weights)
    return PlacementOutcome(Placement(best.node.name, _claims(request.demand, best), score))


def _place_by_policy(
    ctx: CycleContext, pipeline: Pipeline, state: PolicyState, config: PlacementConfig
) -> PlacementOutcome:
    choice = place_by_policy(ctx, pipeline, state, config.node_order, config.explain_failures)
    if choice.option is not None:
        claims = _claims(ctx.request.demand, choice.option)
        return PlacementOutcome(Placement(choice.option.node.name, claims, choice.score))
    why = unschedulable_reason(ctx)
    if why is not None:
        return PlacementOutcome(None, (Rejection(UNSCHEDULABLE, why, 0),), unschedulable=True)
    return PlacementOutcome(None, tuple(Rejection(p, r, c) for p, r, c in choice.rejections))


def _best(
    ctx: CycleContext, pipeline: Pipeline, options: list[Option], weights: Mapping[str, float]
) -> tuple[Option, float]:
    """The highest weighted score, normalised to 0..100; ties go to the earlier option."""
    scorers = [(p.score, weights[p.name]) for p in pipeline.scorers if weights.get(p.name)]
    total_weight = sum(w for _, w in scorers)
    best = options[0]
    best_score = -1.0
    for option in options:
        score = 0.0
        for rate, weight in scorers:
            score += weight * rate(ctx, option)
        if score > best_score:
            best, best_score = option, score
    return best, (best_score / total_weight if total_weight else 0.0)


def _claims(demand: Demand, option: Option) -> tuple[Claim, ...]:
    if isinstance(demand, WholeDemand):
        return tuple(Claim(g.id, milli=1000, memory_mib=g.memory_mib) for g in option.gpus)
    gpu = option.gpus[0]
    if isinstance(demand, FractionDemand):
        return (Claim(gpu.id, milli=demand.milli, memory_mib=demand.memory_mib),)
    profile = profile_for(gpu.model, demand.profile)
    assert profile is not None  # MigProfileExists passed
    return (
        Claim(
            gpu.id,
            mig_profile=profile.name,
            mig_start=option.mig_start,
            mig_size=profile.memory_slices,
            mig_compute=profile.compute_slices,
        ),
    )


def _feasible_options(ctx: CycleContext, pipeline: Pipeline) -> Iterator[Option]:
    demand = ctx.request.demand
    if isinstance(demand, WholeDemand):
        return _whole_options(ctx, pipeline, demand)
    if isinstance(demand, FractionDemand):
        return _fraction_options(ctx, pipeline, demand)
    return _mig_options(ctx, pipeline, demand)


def _whole_options(ctx: CycleContext, pipeline: Pipeline, demand: WholeDemand) -> Iterator[Option]:
    """Nodes with the fewest idle GPUs (of one model) that suffice come first."""
    if demand.count < 1:
        return
    for node, idle in ctx.snapshot.iter_whole_candidates(ctx.models, demand.count):
        if node_rejection(ctx, pipeline, node) is not None:
            continue
        free = passing_gpus(ctx, pipeline, idle)
        by_model = {free[0].model: free} if free else {}
        if any(f.filter_gang(ctx, node, by_model) is not None for f in pipeline.gang_filters):
            continue
        chosen, linked = choose_gpus(free, demand.count, len(node.gpus))
        yield Option(node, chosen, linked_pairs=linked)


def _fraction_options(
    ctx: CycleContext, pipeline: Pipeline, demand: FractionDemand
) -> Iterator[Option]:
    """GPUs with the least free memory that suffices come first."""
    nodes = ctx.snapshot.nodes
    for gpu in ctx.snapshot.iter_fraction_gpus(ctx.models, demand.memory_mib):
        node = nodes[gpu.node]
        if first_rejection(ctx, pipeline, node, gpu) is None:
            yield Option(node, (gpu,))


def _mig_options(ctx: CycleContext, pipeline: Pipeline, demand: MigDemand) -> Iterator[Option]:
    """GPUs left with the fewest free slices after placing come first, then the most room.

    A profile name can mean different shapes on different models (1g.10gb is one
    slice on an A100-80GB, two on an A100-40GB), so each shape is walked in its
    own mask order and the walks are merged.
    """
    shapes: dict[tuple[int, tuple[int, ...]], dict[str, MigProfile]] = {}
    for model in ctx.models:
        profile = profile_for(model, demand.profile)
        if profile is not None:
            shape = (profile.memory_slices, profile.valid_starts)
            shapes.setdefault(shape, {})[model] = profile
    walks = [_mig_shape_options(ctx, pipeline, profiles) for profiles in shapes.values()]
    if len(walks) == 1:
        return walks[0]
    return heapq.merge(*walks, key=_mig_rank)


def _mig_rank(option: Option) -> tuple[int, float]:
    after = option.mig_mask_after
    return -after.bit_count(), -room_score(after)


def _mig_shape_options(
    ctx: CycleContext, pipeline: Pipeline, profiles: dict[str, MigProfile]
) -> Iterator[Option]:
    """Options on the models in `profiles`, which all give the profile the same shape."""
    masks = candidate_masks(next(iter(profiles.values())))
    nodes = ctx.snapshot.nodes
    for gpu in ctx.snapshot.iter_mig_gpus(profiles, masks):
        node = nodes[gpu.node]
        if first_rejection(ctx, pipeline, node, gpu) is not None:
            continue
        profile = profiles[gpu.model]
        mask = gpu.mig_used_mask
        start = best_start(profile, mask, gpu.mig_used_compute, gpu.mig_profile_counts)
        assert start is not None  # MigSlotsFree passed
        yield Option(node, (gpu,), mig_start=start, mig_mask_after=mask | profile.slot_mask(start))
