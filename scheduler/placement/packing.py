"""The walk for packing policies: every feasible node is scored, ties follow a fixed node order.

Unlike the default walk, which stops after a few feasible options, a packing
policy (FGD, BestFit, ...) must see every feasible node. Scoring 1,000+ nodes
per request is affordable because nodes in identical state score the same:
the walk visits the snapshot's node classes, scores one representative per
class, and memoises (class, request) -> score or rejection until the class ids
change (a new snapshot) or the scorer's inputs do (the request mix). In the
usual case each request kind also keeps its feasible classes ranked by score,
brought up to date from the classes that appeared or emptied since its last
placement (the snapshot's class change log), so a placement costs the classes
that changed, not all of them. For FGD, what a class's GPUs decide of its score
(the GPUs that fit, their state before and after each choice) is kept per GPU
state, shared by the request kinds that differ only in CPU or memory: most
classes a kind judges have GPUs in a state another kind has judged already.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Hashable, Iterable, Iterator, KeysView, Mapping, Sequence
from dataclasses import dataclass

from scheduler.domain.fleet import FleetSnapshot, GpuView, NodeView
from scheduler.domain.requests import FractionDemand, PlacementRequest, WholeDemand
from scheduler.placement.fragmentation import FragmentationScorer, GpuSide, RequestMix
from scheduler.placement.pipeline import Pipeline, gpu_rejection, passing_gpus
from scheduler.placement.plugins import CycleContext, NodeReserved, Option
from scheduler.placement.policies import (
    FragmentationTieBreak,
    GpuClustering,
    NodeScorer,
    RandomFit,
    make_scorer,
)

# A class's verdict: its score (0..), or REJECTED (why is worked out only when explaining).
# Below every score.
Verdict = int
REJECTED = -1
# Bounds on the memo (request kinds, and classes per kind), so a long-lived server stays small.
MAX_REQUEST_KINDS = 4_000
MAX_CLASSES_PER_KIND = 200_000
# An FGD scan's GpuSides, by request GPU key then GPU state: what the GPUs decide of a
# verdict (None: too few GPUs fit), shared by request kinds that differ in CPU or memory.
GpuSides = dict[int, GpuSide | None]
# A request kind's memo is cut back to the classes in use once it holds this many times
# as many (the rest are states no node is in now; a state seen again is judged again).
STALE_VERDICTS = 4


class ClassRanking:
    """One request kind's feasible classes by verdict, kept up to date from the snapshot's
    class change log, so a scan looks only at the classes that appeared or emptied since
    the last one rather than at all of them."""

    def __init__(self) -> None:
        self.version = -1  # the class log's version it reflects (-1: none yet)
        self._verdict: dict[int, Verdict] = {}  # feasible class in the fleet -> its verdict
        self._by_verdict: dict[Verdict, dict[int, None]] = {}

    def clear(self) -> None:
        self.version = -1
        self._verdict.clear()
        self._by_verdict.clear()

    def add(self, class_id: int, verdict: Verdict) -> None:
        """A class now in the fleet, with its verdict (REJECTED ones are not kept)."""
        if verdict == REJECTED or class_id in self._verdict:
            return
        self._verdict[class_id] = verdict
        self._by_verdict.setdefault(verdict, {})[class_id] = None

    def discard(self, class_id: int) -> None:
        """A class no node is in now."""
        verdict = self._verdict.pop(class_id, None)
        if verdict is None:
            return
        same = self._by_verdict[verdict]
        del same[class_id]
        if not same:
            del self._by_verdict[verdict]

    def best(self) -> tuple[Verdict, KeysView[int]]:
        """The best verdict and its classes (in no particular order); REJECTED if none."""
        if not self._by_verdict:
            return REJECTED, {}.keys()
        best = max(self._by_verdict)
        return best, self._by_verdict[best].keys()


class KindMemo:
    """What a packing policy keeps per request kind: class verdicts, and their ranking."""

    def __init__(self, mix_version: int, verdicts: dict[Hashable, Verdict]) -> None:
        self.mix_version = mix_version
        self.verdicts = verdicts
        self.ranking = ClassRanking()


class PolicyState:
    """What a packing policy keeps between place() calls: its scorer, RNG and verdict memo."""

    def __init__(self, policy: str, mix: RequestMix | None, seed: int) -> None:
        self.policy = policy
        self.scorer: NodeScorer = make_scorer(policy, mix)
        self.rng = random.Random(seed)
        self.mix = mix
        # request key -> its memo; one hash of the request per place().
        self._memos: dict[object, KindMemo] = {}
        self._gpu_sides: dict[object, GpuSides] = {}
        self._token: object = None

    def placed(self, node: str, request: PlacementRequest) -> None:
        """Tell a scorer that reads history (Clustering) that a placement was committed."""
        if isinstance(self.scorer, GpuClustering):
            # Verdicts are memoised by (class, kinds on the node), so none goes stale.
            self.scorer.observe(node, request)

    def memo_for(self, snapshot: FleetSnapshot, key: object) -> KindMemo:
        """The memo of class verdicts for one request key on this snapshot.

        A new request mix changes scores, not feasibility: each request key drops its
        scores (once, when next asked) and keeps its rejections, so a mix change costs
        re-scoring the feasible classes only.
        """
        mix_version = self.mix.version if self.mix is not None else 0
        self._follow(snapshot)
        memo = self._memos.get(key)
        if memo is None or len(memo.verdicts) >= MAX_CLASSES_PER_KIND:
            if len(self._memos) >= MAX_REQUEST_KINDS:
                self._memos.clear()
            memo = self._memos[key] = KindMemo(mix_version, {})
        elif memo.mix_version != mix_version:
            kept = {k: v for k, v in memo.verdicts.items() if v == REJECTED}
            memo = self._memos[key] = KindMemo(mix_version, kept)
        return memo

    def gpu_sides_for(self, snapshot: FleetSnapshot, key: object) -> GpuSides:
        """The GpuSides of one request GPU key (see _scan_best) on this snapshot."""
        self._follow(snapshot)
        sides = self._gpu_sides.get(key)
        if sides is None or len(sides) >= MAX_CLASSES_PER_KIND:
            if len(self._gpu_sides) >= MAX_REQUEST_KINDS:
                self._gpu_sides.clear()
            sides = self._gpu_sides[key] = {}
        return sides

    def _follow(self, snapshot: FleetSnapshot) -> None:
        """Drop what is keyed by class or GPU state ids when the snapshot renumbers them."""
        if snapshot.class_token is not self._token:
            self._memos = {}
            self._gpu_sides = {}
            self._token = snapshot.class_token


@dataclass(frozen=True)
class PolicyChoice:
    option: Option | None
    score: float
    rejections: tuple[tuple[str, str, int], ...] = ()  # (plugin, reason, count) when none


def place_by_policy(
    ctx: CycleContext,
    pipeline: Pipeline,
    state: PolicyState,
    order: Mapping[str, int] | None,
    explain: bool = True,
) -> PolicyChoice:
    """The best-scored feasible node (ties: lowest in `order`, else by name) and its GPUs."""
    snapshot, request = ctx.snapshot, ctx.request
    scored, best, verdicts = _scan(ctx, pipeline, state)
    name = _pick(state, scored, best, request.avoid_nodes, order)
    if name is None:
        rejections = _tally(ctx, pipeline, state.scorer, verdicts) if explain else ()
        return PolicyChoice(None, 0.0, rejections)
    node = snapshot.nodes[name]
    fitting = fitting_gpus(ctx, pipeline, node)
    assert fitting is not None  # the node's class passed every filter
    score, gpus = state.scorer.best(request, node, fitting)
    if isinstance(state.scorer, RandomFit):
        gpus = _random_gpus(state.rng, request, fitting)
    if isinstance(state.scorer, FragmentationTieBreak):
        score //= state.scorer.span  # report the FGD part, 0..100
    return PolicyChoice(Option(node, gpus), float(score))


def best_nodes(
    ctx: CycleContext,
    pipeline: Pipeline,
    state: PolicyState,
    order: Mapping[str, int] | None,
    limit: int,
) -> list[str]:
    """Up to `limit` feasible nodes that share the best policy score, lowest in `order` first
    (else by name); reserved nodes are passed over. Empty when nothing is feasible."""
    scored, best, _ = _scan(ctx, pipeline, state)
    return _ranked(scored, best, ctx.request.avoid_nodes, order, limit)


def _scan(
    ctx: CycleContext, pipeline: Pipeline, state: PolicyState
) -> tuple[list[tuple[int, dict[str, None]]], int, dict[Hashable, Verdict]]:
    """Every class's verdict (memoised): the scored classes, the best score, the memo.

    Only the classes of the best score are kept unless nodes are reserved or the
    policy is random (those look past the best): the simulator's hot loop.
    """
    snapshot, request = ctx.snapshot, ctx.request
    # Everything the filters read of the request (the class is the node's side): the
    # models a workload class's generation policy rules out, too, as the memo outlives
    # mix changes.
    key = (
        request.demand,
        request.cpu_milli,
        request.host_memory_mib,
        request.gpu_models,
        request.excluded_models,
    )
    memo = state.memo_for(snapshot, key)
    verdicts = memo.verdicts
    keep_all = bool(request.avoid_nodes) or isinstance(state.scorer, RandomFit)
    if not keep_all and not isinstance(state.scorer, GpuClustering):
        sides = None
        if isinstance(state.scorer, FragmentationScorer):
            # What the filters and the scorer read of the request's GPU side.
            gpu_key = (
                request.demand,
                request.host_only,
                request.gpu_models,
                request.excluded_models,
            )
            sides = state.gpu_sides_for(snapshot, gpu_key)
        return _scan_best(ctx, pipeline, state.scorer, memo, sides)
    scored: list[tuple[int, dict[str, None]]] = []
    best = -1
    groups: Iterable[tuple[Hashable, dict[str, None]]] = snapshot.node_classes().items()
    if isinstance(state.scorer, GpuClustering):
        groups = _groups(snapshot, state.scorer)
    for class_key, members in groups:
        verdict = verdicts.get(class_key)
        if verdict is None:
            node = snapshot.nodes[next(iter(members))]
            verdict = verdicts[class_key] = _judge(ctx, pipeline, state.scorer, node)
        if verdict != REJECTED:
            if verdict > best:
                best = verdict
                if not keep_all:
                    scored = []
            if keep_all or verdict == best:
                scored.append((verdict, members))
    return scored, best, verdicts


def _scan_best(
    ctx: CycleContext,
    pipeline: Pipeline,
    scorer: NodeScorer,
    memo: KindMemo,
    sides: GpuSides | None,
) -> tuple[list[tuple[int, dict[str, None]]], int, dict[Hashable, Verdict]]:
    """_scan for the usual case (no reserved nodes, a state-only scorer): the simulator's
    hot loop. The kind's ranking is brought up to date with the classes that appeared
    (judged, if new to the memo) or emptied since its last scan; all of them when it is
    that far behind. Judging order does not matter: a verdict depends on its class and
    the request only, and _ranked breaks ties by node, whatever the classes' order."""
    snapshot = ctx.snapshot
    classes = snapshot.node_classes()
    ranking, verdicts = memo.ranking, memo.verdicts
    version, changed = snapshot.node_class_changes(ranking.version)
    if changed is None or len(changed) > len(classes):
        ranking.clear()
        changed = list(classes)
    fresh: dict[int, None] = {}  # classes new to the memo, judged together below
    for class_id in changed:
        members = classes.get(class_id)
        if members is None:
            ranking.discard(class_id)
            continue
        verdict = verdicts.get(class_id)
        if verdict is None:
            fresh[class_id] = None
        else:
            ranking.add(class_id, verdict)
    ranking.version = version
    if not fresh:
        return _best_of(ranking, classes, verdicts)
    representatives = [snapshot.nodes[next(iter(classes[c]))] for c in fresh]
    if sides is not None:
        gpu_states = snapshot.node_class_gpu_states()
        parts = [gpu_states[c] for c in fresh]
        judged = _judge_all(ctx, pipeline, scorer, representatives, sides, parts)
        if len(sides) > STALE_VERDICTS * len(classes):
            # As for the verdicts below: keep the GPU states some node is in now.
            in_use = {gpu_states[c] for c in classes}
            kept_sides = {g: side for g, side in sides.items() if g in in_use}
            sides.clear()
            sides.update(kept_sides)
    else:
        judged = _judge_all(ctx, pipeline, scorer, representatives)
    for class_id, verdict in zip(fresh, judged, strict=True):
        verdicts[class_id] = verdict
        ranking.add(class_id, verdict)
    if len(verdicts) > STALE_VERDICTS * len(classes):
        # Mostly states no node is in any more: keep the memo small.
        kept: dict[Hashable, Verdict] = {k: verdicts[k] for k in classes}
        verdicts.clear()
        verdicts.update(kept)
    return _best_of(ranking, classes, verdicts)


def _best_of(
    ranking: ClassRanking, classes: dict[int, dict[str, None]], verdicts: dict[Hashable, Verdict]
) -> tuple[list[tuple[int, dict[str, None]]], int, dict[Hashable, Verdict]]:
    best, best_classes = ranking.best()
    if best == REJECTED:
        return [], -1, verdicts
    # [(best, members) for each best class], built in C: ~20 classes, on every placement.
    scored = list(zip(itertools.repeat(best), map(classes.__getitem__, best_classes)))
    return scored, best, verdicts


def _groups(
    snapshot: FleetSnapshot, scorer: NodeScorer
) -> Iterator[tuple[Hashable, dict[str, None]]]:
    """Nodes that score alike: the snapshot's classes, split by history for a scorer
    that reads it (Clustering)."""
    if not isinstance(scorer, GpuClustering):
        yield from snapshot.node_classes().items()
        return
    for class_id, members in snapshot.node_classes().items():
        split: dict[Hashable, dict[str, None]] = {}
        for name in members:
            split.setdefault((class_id, scorer.node_tag(name)), {})[name] = None
        yield from split.items()


def _judge(ctx: CycleContext, pipeline: Pipeline, scorer: NodeScorer, node: NodeView) -> Verdict:
    """Score a class by its representative; node-name filters are left to _pick."""
    return _judge_all(ctx, pipeline, scorer, [node])[0]


def _judge_all(
    ctx: CycleContext,
    pipeline: Pipeline,
    scorer: NodeScorer,
    nodes: list[NodeView],
    sides: GpuSides | None = None,
    gpu_states: Sequence[int] = (),
) -> list[Verdict]:
    """_judge for each of `nodes`: filtered one by one, the feasible scored together
    where the scorer can (FGD measures their node states in one pass). With `sides`,
    an FGD scorer's GpuSide of each node is read from there by its GPU state (in
    `gpu_states`), else worked out and kept: most nodes judged have GPUs in a state
    already judged for a request kind that differs only in CPU or memory."""
    if isinstance(scorer, FragmentationScorer) and scorer.measuring:
        if sides is None:  # nothing kept: one throwaway entry per node
            sides, gpu_states = {}, range(len(nodes))
        return _judge_fragmentation(ctx, pipeline, scorer, nodes, sides, gpu_states)
    verdicts = [REJECTED] * len(nodes)
    for i, node in enumerate(nodes):
        fitting = _fitting_if_feasible(ctx, pipeline, node)
        if fitting is not None:
            verdicts[i] = scorer.best(ctx.request, node, fitting)[0]
    return verdicts


def _judge_fragmentation(
    ctx: CycleContext,
    pipeline: Pipeline,
    scorer: FragmentationScorer,
    nodes: list[NodeView],
    sides: GpuSides,
    gpu_states: Sequence[int],
) -> list[Verdict]:
    """_judge_all for a measuring FGD scorer (see there)."""
    verdicts = [REJECTED] * len(nodes)
    at: list[int] = []
    candidates: list[tuple[NodeView, GpuSide]] = []
    request = ctx.request
    node_checks = [f.filter_node for f in pipeline.node_filters if f.name != NodeReserved.name]
    for i, node in enumerate(nodes):
        gpu_state = gpu_states[i]
        known = gpu_state in sides
        if known and sides[gpu_state] is None:
            continue  # too few GPUs fit, whatever the node's CPU and memory
        if any(check(ctx, node) is not None for check in node_checks):
            continue
        if known:
            side = sides[gpu_state]
        else:
            fitting = fitting_gpus(ctx, pipeline, node)
            side = sides[gpu_state] = (
                None if fitting is None else scorer.gpu_side(request, node, fitting)
            )
        if side is not None:
            at.append(i)
            candidates.append((node, side))
    for i, score in zip(at, scorer.side_scores(request, candidates), strict=True):
        verdicts[i] = score
    return verdicts


def _node_rejected(ctx: CycleContext, pipeline: Pipeline, node: NodeView) -> bool:
    """Whether a node filter (but node-name ones) rejects the node."""
    return any(
        f.name != NodeReserved.name and f.filter_node(ctx, node) is not None
        for f in pipeline.node_filters
    )


def _fitting_if_feasible(
    ctx: CycleContext, pipeline: Pipeline, node: NodeView
) -> list[GpuView] | None:
    """fitting_gpus of a node the node filters pass (but node-name ones), else None."""
    if _node_rejected(ctx, pipeline, node):
        return None
    return fitting_gpus(ctx, pipeline, node)


def _rejections(
    ctx: CycleContext, pipeline: Pipeline, node: NodeView
) -> tuple[tuple[str, str, int], ...]:
    """Why a rejected class's representative cannot take the request, (plugin, reason,
    count per member node): only asked when a failed placement is explained."""
    for node_filter in pipeline.node_filters:
        if node_filter.name == NodeReserved.name:
            continue
        reason = node_filter.filter_node(ctx, node)
        if reason is not None:
            count = 1 if isinstance(ctx.request.demand, WholeDemand) else max(1, len(node.gpus))
            return ((node_filter.name, reason, count),)
    return _gpu_rejections(ctx, pipeline, node)


def fitting_gpus(ctx: CycleContext, pipeline: Pipeline, node: NodeView) -> list[GpuView] | None:
    """The GPUs the request could take on this node (see NodeScorer.best), None if too few."""
    demand = ctx.request.demand
    if ctx.request.host_only:
        return []
    passing = passing_gpus(ctx, pipeline, node.gpus)
    if isinstance(demand, FractionDemand):
        return passing or None
    if not isinstance(demand, WholeDemand) or demand.count < 1:
        return None
    by_model: dict[str, list[GpuView]] = {}
    for gpu in passing:
        by_model.setdefault(gpu.model, []).append(gpu)
    if any(f.filter_gang(ctx, node, by_model) is not None for f in pipeline.gang_filters):
        return None
    return next(gpus for gpus in by_model.values() if len(gpus) >= demand.count)


def _gpu_rejections(
    ctx: CycleContext, pipeline: Pipeline, node: NodeView
) -> tuple[tuple[str, str, int], ...]:
    """As explain.py counts them: whole GPUs by node, fractions by GPU."""
    if isinstance(ctx.request.demand, WholeDemand):
        passing = passing_gpus(ctx, pipeline, node.gpus)
        by_model: dict[str, list[GpuView]] = {}
        for gpu in passing:
            by_model.setdefault(gpu.model, []).append(gpu)
        for gang_filter in pipeline.gang_filters:
            reason = gang_filter.filter_gang(ctx, node, by_model)
            if reason is not None:
                return ((gang_filter.name, reason, 1),)
        return (("WholeGpusFree", "no GPUs to take", 1),)
    tally: dict[tuple[str, str], int] = {}
    for gpu in node.gpus:
        rejection = gpu_rejection(ctx, pipeline, gpu)
        if rejection is not None:
            tally[rejection] = tally.get(rejection, 0) + 1
    return tuple((plugin, reason, count) for (plugin, reason), count in tally.items())


def _pick(
    state: PolicyState,
    scored: list[tuple[int, dict[str, None]]],
    best: int,
    avoid: frozenset[str],
    order: Mapping[str, int] | None,
) -> str | None:
    """The chosen node's name, or None when every feasible node is reserved."""
    if not scored:
        return None
    if isinstance(state.scorer, RandomFit):
        names = [n for _, members in scored for n in members if n not in avoid]
        return state.rng.choice(names) if names else None
    ranked = _ranked(scored, best, avoid, order, 1)
    return ranked[0] if ranked else None


def _ranked(
    scored: list[tuple[int, dict[str, None]]],
    best: int,
    avoid: frozenset[str],
    order: Mapping[str, int] | None,
    limit: int,
) -> list[str]:
    """Up to `limit` nodes of the highest score that has one not in `avoid`, in node order."""
    # Highest score first; within a score, the lowest nodes in the fixed order.
    if not avoid and limit == 1 and order is not None and scored:  # the usual case, in C
        best_names = itertools.chain.from_iterable(m for s, m in scored if s == best)
        return [min(best_names, key=order.__getitem__)]
    for score in sorted({s for s, _ in scored}, reverse=True) if avoid else [best]:
        names = [n for s, members in scored if s == score for n in members if n not in avoid]
        if names:
            if limit == 1:
                return [min(names, key=order.__getitem__) if order is not None else min(names)]
            key = order.__getitem__ if order is not None else None
            return heapq.nsmallest(limit, names, key=key)
    return []


def _random_gpus(
    rng: random.Random, request: PlacementRequest, fitting: list[GpuView]
) -> tuple[GpuView, ...]:
    demand = request.demand
    if isinstance(demand, FractionDemand):
        return (rng.choice(fitting),)
    if isinstance(demand, WholeDemand) and demand.count:
        return tuple(sorted(rng.sample(fitting, demand.count), key=lambda g: g.index))
    return ()


def _tally(
    ctx: CycleContext,
    pipeline: Pipeline,
    scorer: NodeScorer,
    verdicts: Mapping[Hashable, Verdict],
) -> tuple[tuple[str, str, int], ...]:
    """Every class's rejections times its members, plus reserved nodes, largest first."""
    tally: dict[tuple[str, str], int] = {}
    avoid = ctx.request.avoid_nodes
    for class_key, members in _groups(ctx.snapshot, scorer):
        verdict = verdicts[class_key]
        # The smaller side scanned: few reserved nodes are looked up in each class
        # instead of every class's members (O(fleet) per failed placement).
        if len(avoid) < len(members):
            reserved = [n for n in avoid if n in members]
        else:
            reserved = [n for n in members if n in avoid]
        if reserved:
            reason = NodeReserved().filter_node(ctx, ctx.snapshot.nodes[reserved[0]]) or ""
            tally[NodeReserved.name, reason] = tally.get((NodeReserved.name, reason), 0) + len(
                reserved
            )
        if verdict != REJECTED or len(reserved) == len(members):
            continue
        representative = ctx.snapshot.nodes[next(iter(members))]
        for plugin, reason, count in _rejections(ctx, pipeline, representative):
            tally[plugin, reason] = tally.get((plugin, reason), 0) + count * (
                len(members) - len(reserved)
            )
    return tuple(
        sorted(((p, r, c) for (p, r), c in tally.items()), key=lambda t: (-t[2], t[0], t[1]))
    )
