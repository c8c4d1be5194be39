"""Fragmentation Gradient Descent (Weng et al., USENIX ATC '23) against an observed request mix.

A node's fragment for a typical pod type is the free GPU capacity that type
cannot use there; the node's fragmentation is the popularity-weighted sum over
the types. FGD places each request where fragmentation grows least, scored
int(100 * sigmoid(-delta / 1000)) so that, as in the paper's simulator, nearly
equal placements tie and the fixed node order decides.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar, NamedTuple, Protocol, cast

from scheduler.domain.fleet import GpuView, NodeView
from scheduler.domain.requests import FractionDemand, PlacementRequest, WholeDemand
from scheduler.placement.capacity_fragments import CapacityFragments
from scheduler.placement.plugins import CycleContext, Option

# Typical types cover this share of the observed requests (the paper's 95 %).
DEFAULT_COVERAGE = 0.95
# Stands in for "CPU not tracked": larger than any request.
UNTRACKED_CPU = 1 << 60
# A live mix counts this many of the latest requests, and re-derives its typical types
# each time 1/REFRESH_FRACTION of them are new.
DEFAULT_WINDOW = 10_000
REFRESH_FRACTION = 100
# Typical types are kept as they were while the fresh ones are within this total
# variation distance of them (half the summed popularity changes, types entering or
# leaving the 95 % cut included): a type near the cut flipping in and out moves it by
# its own small share, not by re-scoring the fleet.
REFRESH_TOLERANCE = 0.02
# Bound on the memo of fragmentation per node state, so a long-lived server stays small.
MAX_MEMO = 500_000

# A node's GPUs as (model, free milli), in index order or sorted.
GpuState = tuple[tuple[str, int], ...]
# A node state as FGD measures it: (GPUs sorted, free CPU, free memory).
StateKey = tuple[GpuState, int, int]


@dataclass(frozen=True)
class PodType:
    """(CPU request, GPUs, milli-GPU per GPU, allowed models): what FGD tells requests apart by."""

    cpu_milli: int
    num_gpu: int
    gpu_milli: int
    gpu_models: frozenset[str] = frozenset()
    memory_mib: int = 0  # host memory


def pod_type_of(request: PlacementRequest) -> PodType | None:
    """The type of a fractional, whole-GPU or host-only request; None for MIG."""
    demand = request.demand
    memory = request.host_memory_mib
    if isinstance(demand, FractionDemand):
        return PodType(request.cpu_milli, 1, demand.milli, request.gpu_models, memory)
    if isinstance(demand, WholeDemand):
        milli = 1000 if demand.count else 0
        return PodType(request.cpu_milli, demand.count, milli, request.gpu_models, memory)
    return None


# node_fragment and its variants: (types, GPUs, free CPU, free memory) -> fragment.
FragmentMeasure = Callable[[Sequence[tuple[PodType, float]], GpuState, int, int], float]


class RequestMix:
    """How often each pod type was asked for: built from a trace or recorded live.

    Live, only the last `window` recorded requests count (older ones drop out), so
    the mix follows the workload and its memory stays bounded. The typical types
    are re-derived (bumping `version`, which voids the scorers' memos) once 1 % of
    the window has changed, not on every request: a 10,000-GPU fleet is not
    re-scored for each arrival. Counts given at construction never drop out.
    """

    def __init__(
        self, counts: Iterable[tuple[PodType, int]] = (), window: int = DEFAULT_WINDOW
    ) -> None:
        self._counts: Counter[PodType] = Counter()
        for pod_type, count in counts:
            self._counts[pod_type] += count
        self._recent: deque[PodType] = deque(maxlen=max(1, window))
        self._pending = 0  # records since version last changed
        self.version = 0  # bumped when the typical types may have changed
        self._typical: dict[tuple[float, bool, bool, bool], tuple[tuple[PodType, float], ...]] = {}

    @classmethod
    def from_requests(cls, requests: Iterable[PlacementRequest]) -> RequestMix:
        """A fixed mix (a trace's): every request counts, whatever the window."""
        counts: Counter[PodType] = Counter()
        for request in requests:
            pod_type = pod_type_of(request)
            if pod_type is not None:
                counts[pod_type] += 1
        return cls(counts.items())

    def record(self, request: PlacementRequest) -> None:
        pod_type = pod_type_of(request)
        if pod_type is None:
            return
        recent = self._recent
        if len(recent) == recent.maxlen:
            old = recent.popleft()
            self._counts[old] -= 1
            if not self._counts[old]:
                del self._counts[old]
        recent.append(pod_type)
        self._counts[pod_type] += 1
        self._pending += 1
        if self._pending >= max(1, len(recent) // REFRESH_FRACTION):
            self._pending = 0
            self._refresh()

    def _refresh(self) -> None:
        """Re-derive the typical types in use; bump `version` only if they moved.

        Scores are integers, so a mix within REFRESH_TOLERANCE (total variation)
        changes next to none of them: keeping the old types then keeps the scorers'
        memos, which re-scoring a 10,000-GPU fleet after every step would not.
        """
        old = dict(self._typical)
        self._typical.clear()
        moved = not old
        for key, types in old.items():
            fresh = self.typical(*key)
            if not _close(types, fresh):
                moved = True
        if moved:
            self.version += 1
        else:
            self._typical = old

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def typical(
        self,
        coverage: float = DEFAULT_COVERAGE,
        memory_aware: bool = False,
        by_demand: bool = False,
        demand_cut: bool = False,
    ) -> tuple[tuple[PodType, float], ...]:
        """The most popular types until they cover `coverage` of requests, with popularity.

        Popularity is renormalised over the kept types (they sum to 1): with it, our
        FGD lands within 0.02 points of the published 10-seed mean on the default
        trace; shares of all requests (summing to 0.95) land 0.2 points worse.
        Without `memory_aware`, types that differ only in host memory are one type
        (the paper's FGD); with it, each kept type is split by the memory its
        requests asked for. `by_demand` weighs a type by the GPU it asks for in all
        (count x GPUs x milli) rather than by its count, so host-only types drop out
        and multi-GPU ones, rare by count, weigh what they ask for. `demand_cut` also
        keeps the types that cover `coverage` of the GPU asked for (multi-GPU types,
        rare by count), still weighed by count.
        """
        key = (coverage, memory_aware, by_demand, demand_cut)
        cached = self._typical.get(key)
        if cached is not None:
            return cached
        # Types are told apart as the paper does (without memory) to choose the typical
        # ones; a memory-aware mix then splits each by the memory its requests asked for.
        weights: Counter[PodType] = Counter()
        by_memory: dict[PodType, Counter[int]] = {}
        for pod_type, count in self._counts.items():
            plain = replace(pod_type, memory_mib=0)
            weight = count * (plain.num_gpu * plain.gpu_milli if by_demand else 1)
            if weight:
                weights[plain] += weight
                by_memory.setdefault(plain, Counter())[pod_type.memory_mib] += weight
        kept = _most_common_covering(weights, coverage)
        if demand_cut:
            demand = Counter({t: w * t.num_gpu * t.gpu_milli for t, w in weights.items()})
            heavy = {t for t, _ in _most_common_covering(+demand, coverage)}
            chosen = {t for t, _ in kept} | heavy
            kept = [(t, w) for t, w in weights.most_common() if t in chosen]
        covered = sum(w for _, w in kept)
        typical: tuple[tuple[PodType, float], ...]
        if memory_aware:
            typical = tuple(
                (replace(pod_type, memory_mib=memory), n / covered)
                for pod_type, _ in kept
                for memory, n in by_memory[pod_type].items()
            )
        else:
            typical = tuple((pod_type, weight / covered) for pod_type, weight in kept)
        self._typical[key] = typical
        return typical


def _most_common_covering(weights: Counter[PodType], coverage: float) -> list[tuple[PodType, int]]:
    """The heaviest types, heaviest first, until they cover `coverage` of the weight."""
    total = sum(weights.values())
    kept: list[tuple[PodType, int]] = []
    covered = 0
    for pod_type, weight in weights.most_common():
        if covered >= coverage * total:
            break
        kept.append((pod_type, weight))
        covered += weight
    return kept


def _close(old: tuple[tuple[PodType, float], ...], new: tuple[tuple[PodType, float], ...]) -> bool:
    """Popularities within REFRESH_TOLERANCE total variation distance of each other."""
    before, after = dict(old), dict(new)
    moved = sum(abs(before.get(t, 0.0) - after.get(t, 0.0)) for t in before.keys() | after.keys())
    return moved / 2 <= REFRESH_TOLERANCE


def node_fragment(
    types: Sequence[tuple[PodType, float]],
    gpus: GpuState,
    free_cpu: int,
    free_memory: int = UNTRACKED_CPU,
) -> float:
    """Popularity-weighted free milli-GPU that each typical type cannot use on this node."""
    total = sum(free for _, free in gpus)
    if total == 0:
        return 0.0
    fragment = 0.0
    for pod_type, share in types:
        need = pod_type.gpu_milli
        if (
            pod_type.num_gpu == 0
            or free_cpu < pod_type.cpu_milli
            or free_memory < pod_type.memory_mib
        ):
            fragment += share * total
            continue
        allowed = pod_type.gpu_models
        fitting = 0
        small = 0
        for model, free in gpus:
            if free >= need and (not allowed or model in allowed):
                fitting += 1
            else:
                small += free  # too little left, or a model the type may not use
        fragment += share * (small if fitting >= pod_type.num_gpu else total)
    return fragment


def node_fragment_by_capacity(
    types: Sequence[tuple[PodType, float]],
    gpus: GpuState,
    free_cpu: int,
    free_memory: int = UNTRACKED_CPU,
) -> float:
    """Popularity-weighted free milli-GPU left over once the node is filled with each type.

    For a type, the node holds k more of it: as many as its allowed GPUs have room
    for (sharing: free // milli summed per GPU; whole: idle GPUs // count), capped by
    free CPU // its CPU and free memory // its memory. Its fragment is what those k
    leave of the free GPU. Unlike node_fragment, the remainder on a GPU the type fits
    (1000 free, 400 asked: 200) and GPU that only CPU or memory shortage strands count.
    """
    total = sum(free for _, free in gpus)
    if total == 0:
        return 0.0
    fragment = 0.0
    for pod_type, share in types:
        need = pod_type.gpu_milli
        if pod_type.num_gpu == 0 or need == 0:
            fragment += share * total
            continue
        allowed = pod_type.gpu_models
        if need < 1000:
            room = sum(free // need for model, free in gpus if not allowed or model in allowed)
        else:
            idle = sum(
                1 for model, free in gpus if free >= 1000 and (not allowed or model in allowed)
            )
            room = idle // pod_type.num_gpu
        if pod_type.cpu_milli:
            room = min(room, free_cpu // pod_type.cpu_milli)
        if pod_type.memory_mib:
            room = min(room, free_memory // pod_type.memory_mib)
        fragment += share * (total - room * pod_type.num_gpu * need)
    return fragment


def node_fragment_sharing_by_capacity(
    types: Sequence[tuple[PodType, float]],
    gpus: GpuState,
    free_cpu: int,
    free_memory: int = UNTRACKED_CPU,
) -> float:
    """node_fragment_by_capacity for sharing types (under one GPU), node_fragment for the rest.

    A sharing type's fragment is what filling the node with it would leave: the
    remainder on each GPU (free % its milli) and the GPU that CPU or memory strands.
    Whole-GPU types keep FGD's measure. Types differing only in CPU or memory share
    one pass over the GPUs (151 types of the default trace have 25 GPU shapes).
    """
    frees = [free for _, free in gpus]
    total = sum(frees)
    if total == 0:
        return 0.0
    models = {model for model, _ in gpus}
    by_shape: dict[tuple[int, frozenset[str]], tuple[int, int]] = {}
    fragment = 0.0
    for pod_type, share in types:
        need = pod_type.gpu_milli
        if (
            pod_type.num_gpu == 0
            or need == 0
            or free_cpu < pod_type.cpu_milli
            or free_memory < pod_type.memory_mib
        ):
            fragment += share * total
            continue
        allowed = pod_type.gpu_models
        shape = by_shape.get((need, allowed))
        if shape is None:
            usable = frees
            if allowed and not models <= allowed:
                usable = [free for model, free in gpus if model in allowed]
            if need < 1000:  # (room for the type by GPU, -)
                shape = (sum(free // need for free in usable), 0)
            else:  # (GPUs it fits, their free milli)
                fitting = [free for free in usable if free >= need]
                shape = (len(fitting), sum(fitting))
            by_shape[need, allowed] = shape
        if need < 1000:
            room = shape[0]
            if pod_type.cpu_milli:
                room = min(room, free_cpu // pod_type.cpu_milli)
            if pod_type.memory_mib:
                room = min(room, free_memory // pod_type.memory_mib)
            fragment += share * (total - room * need)
        else:
            fragment += share * (total - shape[1] if shape[0] >= pod_type.num_gpu else total)
    return fragment


def node_fragment_sharing_idle_whole(
    types: Sequence[tuple[PodType, float]],
    gpus: GpuState,
    free_cpu: int,
    free_memory: int = UNTRACKED_CPU,
) -> float:
    """EXPERIMENT csi: node_fragment_sharing_by_capacity, but an idle GPU counts as wholly
    usable by a sharing type (other types use it whole): remainders only on used GPUs."""
    frees = [free for _, free in gpus]
    total = sum(frees)
    if total == 0:
        return 0.0
    models = {model for model, _ in gpus}
    fragment = 0.0
    for pod_type, share in types:
        need = pod_type.gpu_milli
        if (
            pod_type.num_gpu == 0
            or need == 0
            or free_cpu < pod_type.cpu_milli
            or free_memory < pod_type.memory_mib
        ):
            fragment += share * total
            continue
        allowed = pod_type.gpu_models
        usable = frees
        if allowed and not models <= allowed:
            usable = [free for model, free in gpus if model in allowed]
        if need < 1000:
            room = sum(free if free >= 1000 else free - free % need for free in usable)
            if pod_type.cpu_milli:
                room = min(room, free_cpu // pod_type.cpu_milli * need)
            if pod_type.memory_mib:
                room = min(room, free_memory // pod_type.memory_mib * need)
            fragment += share * (total - room)
            continue
        fitting = [free for free in usable if free >= need]
        fragment += share * (total - sum(fitting) if len(fitting) >= pod_type.num_gpu else total)
    return fragment


def node_fragment_sharing_remainder(
    types: Sequence[tuple[PodType, float]],
    gpus: GpuState,
    free_cpu: int,
    free_memory: int = UNTRACKED_CPU,
) -> float:
    """EXPERIMENT csg: node_fragment, plus for sharing types the remainder they would leave
    on partly used GPUs they fit (free % need)."""
    fragment = node_fragment(types, gpus, free_cpu, free_memory)
    for pod_type, share in types:
        need = pod_type.gpu_milli
        if not (pod_type.num_gpu and 0 < need < 1000):
            continue
        if free_cpu < pod_type.cpu_milli or free_memory < pod_type.memory_mib:
            continue
        allowed = pod_type.gpu_models
        fragment += share * sum(
            free % need
            for model, free in gpus
            if need <= free < 1000 and (not allowed or model in allowed)
        )
    return fragment


def node_fragment_sharing_resources(
    types: Sequence[tuple[PodType, float]],
    gpus: GpuState,
    free_cpu: int,
    free_memory: int = UNTRACKED_CPU,
) -> float:
    """EXPERIMENT csc: node_fragment_with_resources for sharing types, node_fragment else."""
    sharing = [(t, s) for t, s in types if t.num_gpu and 0 < t.gpu_milli < 1000]
    others = [(t, s) for t, s in types if not (t.num_gpu and 0 < t.gpu_milli < 1000)]
    return node_fragment_with_resources(sharing, gpus, free_cpu, free_memory) + node_fragment(
        others, gpus, free_cpu, free_memory
    )


def node_fragment_with_resources(
    types: Sequence[tuple[PodType, float]],
    gpus: GpuState,
    free_cpu: int,
    free_memory: int = UNTRACKED_CPU,
) -> float:
    """node_fragment, plus the GPU that CPU or memory strands: a type with room for k
    more of it by CPU and memory (free // its request) cannot use more than k times
    its GPU request here, whatever the GPUs could take.
    """
    total = sum(free for _, free in gpus)
    if total == 0:
        return 0.0
    fragment = 0.0
    for pod_type, share in types:
        plain = node_fragment(((pod_type, 1.0),), gpus, free_cpu, free_memory)
        if pod_type.num_gpu and plain < total:
            room = UNTRACKED_CPU
            if pod_type.cpu_milli:
                room = free_cpu // pod_type.cpu_milli
            if pod_type.memory_mib:
                room = min(room, free_memory // pod_type.memory_mib)
            usable = room * pod_type.num_gpu * pod_type.gpu_milli
            plain = max(plain, total - usable)
        fragment += share * plain
    return fragment


def node_versatility(
    types: Sequence[tuple[PodType, float]],
    gpus: GpuState,
    free_cpu: int,
    free_memory: int = UNTRACKED_CPU,
) -> float:
    """The popularity share of typical types that could still go on this node (0..1).

    A CPU-only type fits where its CPU does; a GPU type needs its CPU and `num_gpu`
    GPUs of an allowed model with `gpu_milli` free each.
    """
    share_fitting = 0.0
    for pod_type, share in types:
        if free_cpu < pod_type.cpu_milli or free_memory < pod_type.memory_mib:
            continue
        if pod_type.num_gpu:
            allowed = pod_type.gpu_models
            need = pod_type.gpu_milli
            fitting = sum(
                1 for model, free in gpus if free >= need and (not allowed or model in allowed)
            )
            if fitting < pod_type.num_gpu:
                continue
        share_fitting += share
    return share_fitting


def fgd_score(delta: float) -> int:
    """int(100 * sigmoid(-delta / 1000)): 50 for no change, higher when fragmentation shrinks."""
    x = delta / 1000.0
    if x > 40:
        return 0
    return int(100.0 / (1.0 + math.exp(x)))


class EmptyMixScorer(Protocol):
    def best(
        self, request: PlacementRequest, node: NodeView, fitting: Sequence[GpuView]
    ) -> tuple[int, tuple[GpuView, ...]]: ...


class FragmentationScorer:
    """FGD as a node scorer: the best GPU choice on a node and its integer score."""

    name: ClassVar[str] = "fgd"

    def __init__(
        self,
        mix: RequestMix,
        coverage: float = DEFAULT_COVERAGE,
        memory_aware: bool = False,
        exact_gpu: bool = False,
        empty_mix: EmptyMixScorer | None = None,
        by_demand: bool = False,
        by_capacity: bool = False,
        by_resources: bool = False,
        sharing_capacity: bool = False,
        experiment: str = "",
        tight_gpu: bool = False,
        demand_cut: bool = False,
    ) -> None:
        self.experiment = experiment
        self.sharing_capacity = sharing_capacity  # node_fragment_sharing_by_capacity
        self.by_resources = by_resources  # node_fragment_with_resources
        self.by_demand = by_demand  # popularity by GPU asked for, not by count
        self.demand_cut = demand_cut  # typical types cover the GPU asked for, too
        self.by_capacity = by_capacity  # node_fragment_by_capacity instead of node_fragment
        self.mix = mix
        self.coverage = coverage
        # On one node, pick the GPU by the exact fragmentation change, not its integer score.
        self.exact_gpu = exact_gpu
        # Between GPUs of one node that score the same, the one with the least free milli.
        self.tight_gpu = tight_gpu
        # What scores while the mix is empty (policies.py passes GpuPacking); None: FGD's
        # own answer, every node 50, so the node order decides.
        self.empty_mix = empty_mix
        # Count host memory as FGD counts CPU: a type short of it on a node cannot go there.
        self.memory_aware = memory_aware
        self._version = -1
        self._types: tuple[tuple[PodType, float], ...] = ()
        self._memo: dict[StateKey, float] = {}
        self._versatility: dict[StateKey, float] = {}
        self._measure: FragmentMeasure = node_fragment

    def _refresh(self) -> None:
        if self._version != self.mix.version:
            self._version = self.mix.version
            self._types = self.mix.typical(
                self.coverage, self.memory_aware, self.by_demand, self.demand_cut
            )
            self._memo.clear()
            self._versatility.clear()
            self._measure = self._measure_for(self._types)

    def _measure_for(self, types: tuple[tuple[PodType, float], ...]) -> FragmentMeasure:
        """The node_fragment variant the options name (for `types`, as some precompute)."""
        if self.experiment == "csi":
            return node_fragment_sharing_idle_whole
        if self.experiment == "csg":
            return node_fragment_sharing_remainder
        if self.experiment == "csc":
            return node_fragment_sharing_resources
        if self.sharing_capacity:
            # node_fragment_sharing_by_capacity, vectorised (the default policy's hot loop).
            return CapacityFragments(types)
        if self.by_resources:
            return node_fragment_with_resources
        return node_fragment_by_capacity if self.by_capacity else node_fragment

    def versatility(self, gpus: GpuState, free_cpu: int, free_memory: int = UNTRACKED_CPU) -> float:
        """Memoised node_versatility of a node state (GPUs in any order)."""
        self._refresh()
        key = (tuple(sorted(gpus)), free_cpu, free_memory)
        value = self._versatility.get(key)
        if value is None:
            if len(self._versatility) >= MAX_MEMO:
                self._versatility.clear()
            value = node_versatility(self._types, key[0], free_cpu, free_memory)
            self._versatility[key] = value
        return value

    def fragmentation(
        self, gpus: GpuState, free_cpu: int, free_memory: int = UNTRACKED_CPU
    ) -> float:
        """Memoised node_fragment of a node state (GPUs in any order)."""
        self._refresh()
        key = (tuple(sorted(gpus)), free_cpu, free_memory)
        return self._values([key])[key]

    def best(
        self, request: PlacementRequest, node: NodeView, fitting: Sequence[GpuView]
    ) -> tuple[int, tuple[GpuView, ...]]:
        self._refresh()
        if not self._types and self.empty_mix is not None:
            # No history yet (a fresh server): pack plainly rather than let every node tie.
            return self.empty_mix.best(request, node, fitting)
        plan = self._plan(request, node, fitting)
        return self._choose(plan, self._values(plan.states()))

    @property
    def measuring(self) -> bool:
        """Whether scores are FGD's own (see gpu_side), not empty_mix's while the mix is empty."""
        self._refresh()
        return bool(self._types) or self.empty_mix is None

    def gpu_side(
        self, request: PlacementRequest, node: NodeView, fitting: Sequence[GpuView]
    ) -> GpuSide:
        """What best() compares on this node that its GPUs alone decide, for side_scores."""
        before, choices, fixed = self._gpu_choices(request, node, fitting, fixed=False)
        return GpuSide(before, tuple(after for _, after in choices), fixed)

    def side_scores(
        self, request: PlacementRequest, candidates: Sequence[tuple[NodeView, GpuSide]]
    ) -> list[int]:
        """best()'s score on each node, from its GpuSide (kept by the packing scan per GPU
        state: request kinds that differ only in CPU or memory share it), the node states
        not measured yet measured together: the scan judges ~10 new node classes per
        placement, and one numpy pass over all costs little more than one. Only while
        `measuring`."""
        keys: list[StateKey] = []
        for node, side in candidates:
            cpu, cpu_after, memory, memory_after = self._host(request, node)
            keys.append((side.before, cpu, memory))
            keys.extend([(after, cpu_after, memory_after) for after in side.afters])
        values = self._fragments(keys)
        scores = []
        at = 0
        for _, side in candidates:
            end = at + 1 + len(side.afters)
            scores.append(self._score(values[at], values[at + 1 : end], side.fixed))
            at = end
        return scores

    def choose(
        self, request: PlacementRequest, node: NodeView, fitting: Sequence[GpuView]
    ) -> tuple[tuple[GpuView, ...], int]:
        """best()'s GPUs and score_choice() for exactly them, both from one plan."""
        self._refresh()
        if not self._types and self.empty_mix is not None:
            chosen = self.empty_mix.best(request, node, fitting)[1]
            return chosen, self.score_choice(request, node, chosen)
        plan = self._plan(request, node, fitting)
        values = self._values(plan.states())
        _, chosen = self._choose(plan, values)
        # score_choice's fixed plan has this choice's state after: the same fragments.
        after = next(after for gpus, after in plan.choices if gpus is chosen)
        return chosen, fgd_score(values[after] - values[plan.before])

    def score_choice(
        self, request: PlacementRequest, node: NodeView, chosen: Sequence[GpuView]
    ) -> int:
        """The integer FGD score of placing `request` on exactly these GPUs of `node`."""
        self._refresh()
        if not self._types and self.empty_mix is not None:
            return self.empty_mix.best(request, node, chosen)[0]
        plan = self._plan(request, node, chosen, fixed=True)
        return self._choose(plan, self._values(plan.states()))[0]

    def _plan(
        self,
        request: PlacementRequest,
        node: NodeView,
        fitting: Sequence[GpuView],
        fixed: bool = False,
    ) -> _Plan:
        """The node states best() compares: the node's now, and after each choice."""
        before, choices, one = self._gpu_choices(request, node, fitting, fixed)
        cpu, cpu_after, memory, memory_after = self._host(request, node)
        return _Plan(
            (before, cpu, memory),
            [(chosen, (after, cpu_after, memory_after)) for chosen, after in choices],
            one,
        )

    def _gpu_choices(
        self, request: PlacementRequest, node: NodeView, fitting: Sequence[GpuView], fixed: bool
    ) -> tuple[GpuState, list[tuple[tuple[GpuView, ...], GpuState]], bool]:
        """The GPU side of _plan: the GPUs' state (sorted) now and after each choice, and
        whether there is one choice only.

        A fraction may go on any fitting GPU (`fixed`: on exactly these), whole GPUs
        on the first `count` fitting ones: which ones does not change the node's
        state, as fitting GPUs are all idle and of one model.
        """
        usable = [g for g in node.gpus if g.healthy and not g.mig_enabled]
        state = [(g.model, g.free_milli) for g in usable]
        before = tuple(sorted(state))
        demand = request.demand
        if fixed or not isinstance(demand, FractionDemand):
            chosen = tuple(fitting)
            if not fixed:
                chosen = chosen[: demand.count] if isinstance(demand, WholeDemand) else ()
            milli = demand.milli if isinstance(demand, FractionDemand) else 1000
            taken = {g.id for g in chosen}
            for i, gpu in enumerate(usable):
                if gpu.id in taken:
                    state[i] = (gpu.model, state[i][1] - milli)
            return before, [(chosen, tuple(sorted(state)))], True
        position = {g.id: i for i, g in enumerate(usable)}
        choices: list[tuple[tuple[GpuView, ...], GpuState]] = []
        tried: set[tuple[str, int]] = set()
        for gpu in fitting:  # index order: the first GPU with the best score wins
            if (gpu.model, gpu.free_milli) in tried:
                continue  # the same node state after as an earlier GPU's: it cannot win
            tried.add((gpu.model, gpu.free_milli))
            after = list(state)
            after[position[gpu.id]] = (gpu.model, gpu.free_milli - demand.milli)
            choices.append(((gpu,), tuple(sorted(after))))
        return before, choices, False

    def _host(self, request: PlacementRequest, node: NodeView) -> tuple[int, int, int, int]:
        """The host side of _plan: free CPU and memory as measured, now and after."""
        cpu = node.free_cpu_milli if node.cpu_milli else UNTRACKED_CPU
        memory = UNTRACKED_CPU
        memory_after = memory
        if self.memory_aware and node.memory_mib:
            memory = node.free_memory_mib
            memory_after = memory - request.host_memory_mib
        cpu_after = cpu - request.cpu_milli if node.cpu_milli else cpu
        return cpu, cpu_after, memory, memory_after

    def _choose(
        self, plan: _Plan, values: Mapping[StateKey, float]
    ) -> tuple[int, tuple[GpuView, ...]]:
        """The best choice of a plan and its integer score, from the states' fragments."""
        before = values[plan.before]
        if plan.fixed:
            chosen, after = plan.choices[0]
            return fgd_score(values[after] - before), chosen
        best_score, best = -1.0, plan.choices[0][0]
        for chosen, after in plan.choices:
            score = self._choice_score(values[after] - before)
            if score > best_score or (
                self.tight_gpu and score == best_score and chosen[0].free_milli < best[0].free_milli
            ):
                best_score, best = score, chosen
        return self._final_score(best_score), best

    def _score(self, before: float, afters: Sequence[float], fixed: bool) -> int:
        """_choose's score from the fragments alone (which GPU wins does not change it)."""
        if fixed:
            return fgd_score(afters[0] - before)
        best_score = -1.0
        for after in afters:
            best_score = max(best_score, self._choice_score(after - before))
        return self._final_score(best_score)

    def _choice_score(self, delta: float) -> float:
        """How _choose compares the choices on one node."""
        return -delta if self.exact_gpu else float(fgd_score(delta))

    def _final_score(self, best_score: float) -> int:
        """The integer score of the best choice's _choice_score."""
        return fgd_score(-best_score) if self.exact_gpu else int(best_score)

    def _values(self, keys: list[StateKey]) -> dict[StateKey, float]:
        """The fragment of each node state, by state (see _fragments)."""
        return dict(zip(keys, self._fragments(keys), strict=True))

    def _fragments(self, keys: list[StateKey]) -> list[float]:
        """The fragment of each node state, memoised (one lookup per state: a node state's
        hash is most of the cost); those not yet known measured at once."""
        memo = self._memo
        found = [memo.get(key) for key in keys]
        if None not in found:
            return cast("list[float]", found)
        pairs = list(zip(keys, found, strict=True))
        missing = list(dict.fromkeys(key for key, value in pairs if value is None))
        if isinstance(self._measure, CapacityFragments):
            measured = dict(zip(missing, self._measure.many(missing), strict=True))
        else:
            measured = {state: self._measure(self._types, *state) for state in missing}
        if len(memo) + len(missing) > MAX_MEMO:
            memo.clear()
        memo.update(measured)
        return [measured[key] if value is None else value for key, value in pairs]


class GpuSide(NamedTuple):
    """What best() compares on a node that its GPUs decide (see _gpu_choices): the GPUs'
    state now and after each choice worth trying, sorted, so the same on every node whose
    GPUs are in one state; free CPU and memory are each node's own."""

    before: GpuState
    afters: tuple[GpuState, ...]
    fixed: bool  # one choice (whole GPUs, host-only)


class _Plan(NamedTuple):
    """What best() compares on one node: the state keys before and after each choice."""

    before: StateKey
    choices: list[tuple[tuple[GpuView, ...], StateKey]]
    fixed: bool  # one choice, given or the only one (whole GPUs, host-only)

    def states(self) -> list[StateKey]:
        return [self.before, *(after for _, after in self.choices)]


@dataclass(frozen=True)
class Fragmentation:
    """Score plugin: the FGD score (0..100) of an option, for the best-fit walk.

    With it weighted and the walk's best-fit plugins not, the walk packs as the
    FGD policy does while WarmModel and NvlinkLocality keep their say.
    """

    name: ClassVar[str] = "Fragmentation"
    scorer: FragmentationScorer
    # Scores worked out already (FragmentationScorer.choose): (node, GPU ids) -> score.
    known: Mapping[tuple[str, tuple[int, ...]], int] = field(default_factory=dict)

    def score(self, ctx: CycleContext, option: Option) -> float:
        known = self.known.get((option.node.name, tuple(g.id for g in option.gpus)))
        if known is not None:
            return float(known)
        return float(self.scorer.score_choice(ctx.request, option.node, option.gpus))
