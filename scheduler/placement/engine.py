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
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace

from scheduler.domain.catalogue import MigProfile
from scheduler.domain.fleet import Claim, FleetSnapshot, GpuView, NodeView
from scheduler.domain.generations import GenerationPolicy
from scheduler.domain.layout import ParallelLayout
from scheduler.domain.mig import best_start, candidate_masks, profile_for, room_score
from scheduler.domain.requests import (
    Demand,
    FractionDemand,
    MigDemand,
    PlacementRequest,
    WholeDemand,
)
from scheduler.placement.explain import UNSCHEDULABLE, explain, unschedulable_reason
from scheduler.placement.fragmentation import Fragmentation, FragmentationScorer, RequestMix
from scheduler.placement.gang import layout_unschedulable, plan_layout
from scheduler.placement.nvlink import choose_gpus
from scheduler.placement.packing import PolicyState, best_nodes, fitting_gpus, place_by_policy
from scheduler.placement.pipeline import (
    Pipeline,
    first_rejection,
    node_rejection,
    passing_gpus,
    pipeline_for,
)
from scheduler.placement.plugins import (
    DEFAULT_SCORE_WEIGHTS,
    FRAGMENTATION_SCORE_WEIGHTS,
    CycleContext,
    Option,
    ScorePlugin,
)
from scheduler.placement.policies import FragmentationTieBreak, in_walk
from scheduler.placement.warm import node_rank


@dataclass(frozen=True)
class Rejection:
    plugin: str  # the filter plugin's name, e.g. "FractionFits"
    reason: str  # human text, e.g. "not enough free memory (needs 30000 MiB, ...)"
    count: int  # how many candidates (GPUs or nodes) it rejected


@dataclass(frozen=True)
class Placement:
    node: str  # rank 0's node
    claims: tuple[Claim, ...]  # rank order
    score: float
    # Every node the placement spans, rank 0's first; empty means just `node`.
    spans: tuple[str, ...] = ()

    @property
    def nodes(self) -> tuple[str, ...]:
        return self.spans or (self.node,)


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
    # Primary / overflow / never GPU models per workload class; None: no preference.
    generation_policy: GenerationPolicy | None = None
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


def config_for_policy(
    policy: str,
    generation_policy: GenerationPolicy | None = None,
    *,
    request_mix: RequestMix | None = None,
    node_order: Mapping[str, int] | None = None,
    seed: int = 0,
    explain_failures: bool = True,
) -> PlacementConfig:
    """The config for a packing policy, live and in the simulator alike.

    An FGD policy without a given mix starts from an empty one that the allocator
    records each new request into (until then FGD packs as GpuPacking does); a
    +walk policy also swaps the walk's best-fit weights for the Fragmentation score.
    """
    if request_mix is None and policy.startswith("fgd"):
        request_mix = RequestMix()
    weights = FRAGMENTATION_SCORE_WEIGHTS if in_walk(policy) else DEFAULT_SCORE_WEIGHTS
    return PlacementConfig(
        score_weights=dict(weights),
        packing_policy=policy,
        request_mix=request_mix,
        generation_policy=generation_policy,
        node_order=node_order,
        seed=seed,
        explain_failures=explain_failures,
    )


def place(
    snapshot: FleetSnapshot, request: PlacementRequest, config: PlacementConfig = PlacementConfig()
) -> PlacementOutcome:
    """The best placement for `request` on `snapshot`, or why there is none. Never mutates.

    With a generation policy, the primary tier of the request's workload class
    is tried first, then the overflow tier; when neither fits, the answer (and
    its reasons) covers every model the class may use.
    """
    policy = config.generation_policy
    plan = None
    if policy is not None:
        plan = policy.plan(request.workload_class, snapshot.structure.models, request.quantized)
    if plan is None:
        return _place(snapshot, request, config)
    request = replace(request, excluded_models=plan.never, excluded_reason=plan.reason)
    if len(plan.tiers) > 1:
        for tier in plan.tiers:
            models = request.gpu_models & tier if request.gpu_models else tier
            if models:
                # A tier that fails needs no reasons: the last try explains for all.
                tier_request = replace(request, gpu_models=models)
                outcome = _place(snapshot, tier_request, config, explain_failure=False)
                if outcome.placement is not None:
                    return outcome
    outcome = _place(snapshot, request, config)
    if outcome.unschedulable and plan.never:
        # Name the policy, or "no node has 4 GPUs of an allowed model" would puzzle.
        excluded = ", ".join(sorted(plan.never))
        policy_reason = Rejection("GenerationAllowed", f"{excluded}: {plan.reason}", 0)
        outcome = replace(outcome, reasons=(*outcome.reasons, policy_reason))
    return outcome


def _place(
    snapshot: FleetSnapshot,
    request: PlacementRequest,
    config: PlacementConfig,
    explain_failure: bool = True,
) -> PlacementOutcome:
    if request.layout is not None:
        return _place_layout(snapshot, request, request.layout, explain_failure)
    ctx = CycleContext(snapshot, request)
    pipeline = pipeline_for(
        request.demand,
        bool(request.cpu_milli or request.host_memory_mib),
        bool(request.gpu_models or request.excluded_models),
    )
    state = config.policy_state
    if state is not None and (
        request.host_only
        or (config.packing_policy != "default" and not isinstance(request.demand, MigDemand))
    ):
        if in_walk(config.packing_policy) and not request.host_only:
            return _place_fragmentation_walk(ctx, pipeline, state, config, explain_failure)
        return _place_by_policy(ctx, pipeline, state, config, explain_failure)
    limit = max(1, config.feasible_to_score)
    options: list[Option] = []
    for option in _feasible_options(ctx, pipeline):
        options.append(option)
        if len(options) >= limit:
            break
    if not options:
        return _explained_failure(ctx, pipeline) if explain_failure else PlacementOutcome(None)
    best, score = _best(ctx, pipeline, options, config.score_weights)
    return PlacementOutcome(Placement(best.node.name, _claims(request.demand, best), score))


def _explained_failure(ctx: CycleContext, pipeline: Pipeline) -> PlacementOutcome:
    """Nothing fits: why, from the walk's bounded explanation (sampled on large fleets)."""
    tally, unschedulable = explain(ctx, pipeline)
    reasons = tuple(Rejection(plugin, reason, count) for plugin, reason, count in tally)
    return PlacementOutcome(None, reasons, unschedulable)


def _place_layout(
    snapshot: FleetSnapshot,
    request: PlacementRequest,
    layout: ParallelLayout,
    explain_failure: bool = True,
) -> PlacementOutcome:
    """A gang: every rank a whole GPU, units inside NVLink domains (gang.py)."""
    unit = layout.domain_unit
    ctx = CycleContext(snapshot, replace(request, demand=WholeDemand(unit)))
    pipeline = pipeline_for(WholeDemand(unit))
    plan, fitting = plan_layout(ctx, pipeline, layout)
    if plan is not None:
        claims = tuple(Claim(g.id, milli=1000, memory_mib=g.memory_mib) for g in plan.gpus)
        # One node scores 100; every extra node a gang spans costs locality.
        score = 100.0 / len(plan.nodes)
        return PlacementOutcome(Placement(plan.nodes[0], claims, score, plan.nodes))
    if not explain_failure:
        return PlacementOutcome(None)
    why = layout_unschedulable(ctx, layout)
    if why is not None:
        return PlacementOutcome(None, (Rejection("Unschedulable", why, 0),), unschedulable=True)
    needed = layout.world_size // unit
    shortfall = Rejection(
        "GangLayout",
        f"layout {layout.describe()} needs {needed} group(s) of {unit} idle GPUs of one "
        f"model inside one NVLink domain each; {fitting} fit now",
        needed - fitting,
    )
    tally, _ = explain(ctx, pipeline)
    others = tuple(Rejection(plugin, reason, count) for plugin, reason, count in tally)
    return PlacementOutcome(None, (shortfall, *others))


def _place_by_policy(
    ctx: CycleContext,
    pipeline: Pipeline,
    state: PolicyState,
    config: PlacementConfig,
    explain_failure: bool,
) -> PlacementOutcome:
    explain_it = config.explain_failures and explain_failure
    choice = place_by_policy(ctx, pipeline, state, config.node_order, explain_it)
    if choice.option is not None:
        claims = _claims(ctx.request.demand, choice.option)
        return PlacementOutcome(Placement(choice.option.node.name, claims, choice.score))
    return _policy_failure(ctx, choice.rejections)


def _policy_failure(
    ctx: CycleContext, rejections: tuple[tuple[str, str, int], ...]
) -> PlacementOutcome:
    """No feasible node for a packing policy: unschedulable, or the rejections counted."""
    why = unschedulable_reason(ctx)
    if why is not None:
        return PlacementOutcome(None, (Rejection(UNSCHEDULABLE, why, 0),), unschedulable=True)
    return PlacementOutcome(None, tuple(Rejection(p, r, c) for p, r, c in rejections))


def _place_fragmentation_walk(
    ctx: CycleContext,
    pipeline: Pipeline,
    state: PolicyState,
    config: PlacementConfig,
    explain_failure: bool,
) -> PlacementOutcome:
    """The walk with the Fragmentation score: the nodes FGD rates best, plus the options
    where the requested model is warm, scored by the weighted plugins.

    FGD's best nodes come from the class scan every FGD policy makes (packing.py).
    Only a multi-GPU request can tell equally rated nodes apart (by NVLink pairs),
    so only then are up to feasible_to_score of them scored; otherwise the first in
    node order is, exactly as fgd+mem would choose.
    """
    # in_walk: an FGD scorer, or a tie rule over one (ties between nodes only)
    scorer = state.scorer.fgd if isinstance(state.scorer, FragmentationTieBreak) else state.scorer
    assert isinstance(scorer, FragmentationScorer)
    demand = ctx.request.demand
    limit = 1
    if isinstance(demand, WholeDemand) and demand.count > 1:
        limit = max(1, config.feasible_to_score)
    names = best_nodes(ctx, pipeline, state, config.node_order, limit)
    if not names:
        # Nothing FGD rates fits, reserved nodes passed over too (best_nodes looks past
        # them as the policy's own pass would, so that pass is not repeated): without
        # the policy's full tally, the walk's bounded explanation (its sampled nodes:
        # the same reasons the walk gives, at any fleet size).
        outcome = _policy_failure(ctx, ())
        if outcome.unschedulable or not explain_failure:
            return outcome
        if not config.explain_failures:
            return PlacementOutcome(None)
        return _explained_failure(ctx, pipeline)
    options: list[Option] = []
    if ctx.request.model:
        warm = itertools.islice(_warm_options(ctx, pipeline), max(1, config.feasible_to_score))
        options.extend(warm)
    known: dict[tuple[str, tuple[int, ...]], int] = {}  # FGD scores worked out here
    for name in names:
        node = ctx.snapshot.nodes[name]
        fitting = fitting_gpus(ctx, pipeline, node)
        assert fitting is not None  # best_nodes: its class passed every filter
        if isinstance(demand, WholeDemand):
            chosen, linked = choose_gpus(fitting, demand.count, len(node.gpus))
            options.append(Option(node, chosen, linked_pairs=linked))
        else:
            chosen, known_score = scorer.choose(ctx.request, node, fitting)
            known[name, tuple(g.id for g in chosen)] = known_score
            options.append(Option(node, chosen))
    options = list(_unique(iter(options)))
    fragmentation = Fragmentation(scorer, known)
    best, score = _best(ctx, pipeline, options, config.score_weights, (fragmentation,))
    return PlacementOutcome(Placement(best.node.name, _claims(demand, best), score))


def _best(
    ctx: CycleContext,
    pipeline: Pipeline,
    options: list[Option],
    weights: Mapping[str, float],
    extra: tuple[ScorePlugin, ...] = (),
) -> tuple[Option, float]:
    """The highest weighted score, normalised to 0..100; ties go to the earlier option."""
    plugins = (*pipeline.scorers, *extra)
    scorers = [(p.score, weights[p.name]) for p in plugins if weights.get(p.name)]
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
        return _warm_first(ctx, pipeline, _whole_options(ctx, pipeline, demand))
    if isinstance(demand, FractionDemand):
        return _warm_first(ctx, pipeline, _fraction_options(ctx, pipeline, demand))
    return _mig_options(ctx, pipeline, demand)


def _whole_options(ctx: CycleContext, pipeline: Pipeline, demand: WholeDemand) -> Iterator[Option]:
    """Nodes with the fewest idle GPUs (of one model) that suffice come first."""
    if demand.count < 1:
        return
    for node, idle in ctx.snapshot.iter_whole_candidates(ctx.models, demand.count):
        option = _whole_option(ctx, pipeline, demand, node, idle)
        if option is not None:
            yield option


def _whole_option(
    ctx: CycleContext, pipeline: Pipeline, demand: WholeDemand, node: NodeView, idle: list[GpuView]
) -> Option | None:
    """`demand.count` of these idle GPUs (one model) of `node`, if the filters let them."""
    if node_rejection(ctx, pipeline, node) is not None:
        return None
    free = passing_gpus(ctx, pipeline, idle)
    by_model = {free[0].model: free} if free else {}
    if any(f.filter_gang(ctx, node, by_model) is not None for f in pipeline.gang_filters):
        return None
    chosen, linked = choose_gpus(free, demand.count, len(node.gpus))
    return Option(node, chosen, linked_pairs=linked)


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


# -- warm model pre-walk (placement/warm.py scores what it finds) ---------------


def _warm_first(ctx: CycleContext, pipeline: Pipeline, walk: Iterator[Option]) -> Iterator[Option]:
    """With a model named, options where it is warm come before the best-fit walk,
    so the cut-off at feasible_to_score cannot leave them unscored."""
    if not ctx.request.model:
        return walk
    return _unique(itertools.chain(_warm_options(ctx, pipeline), walk))


def _unique(options: Iterator[Option]) -> Iterator[Option]:
    seen: set[tuple[str, tuple[int, ...]]] = set()
    for option in options:
        key = (option.node.name, tuple(g.id for g in option.gpus))
        if key not in seen:
            seen.add(key)
            yield option


def _warm_options(ctx: CycleContext, pipeline: Pipeline) -> Iterator[Option]:
    """Nodes holding the model, best tier first; on each, the GPUs holding it first."""
    model = ctx.request.model
    demand = ctx.request.demand
    nodes = sorted(ctx.snapshot.warm_nodes(model), key=lambda n: node_rank(model, n))
    for node in nodes:
        if isinstance(demand, WholeDemand):
            for gpu_model in ctx.models:
                idle = ctx.snapshot.idle_gpus(gpu_model, node.name)
                holding = [g for g in idle if model in g.resident_models]
                for free in (holding, idle):
                    if len(free) >= demand.count:
                        option = _whole_option(ctx, pipeline, demand, node, free)
                        if option is not None:
                            yield option
            continue
        gpus = sorted(node.gpus, key=lambda g: model not in g.resident_models)
        for gpu in gpus:
            if gpu.model in ctx.models and first_rejection(ctx, pipeline, node, gpu) is None:
                yield Option(node, (gpu,))
