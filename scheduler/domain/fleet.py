"""The in-memory fleet snapshot that placement reads and the commit path updates.

Mutate it only through FleetSnapshot's methods: they keep the lookup indexes
that make placement on a 10,000-GPU fleet fast in step with the counters.
"""

from __future__ import annotations

import heapq
import itertools
from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from scheduler.domain.catalogue import MIG_COMPUTE_SLICES
from scheduler.domain.mig import profile_for
from scheduler.domain.node_classes import NodeClasses


@dataclass(frozen=True)
class Claim:
    """What one allocation holds on one GPU. Whole GPU: milli=1000 and all memory."""

    gpu_id: int
    milli: int = 0
    memory_mib: int = 0
    mig_profile: str | None = None
    mig_start: int | None = None
    mig_size: int = 0
    mig_compute: int = 0


@dataclass
class GpuView:
    id: int
    uuid: str
    node: str
    index: int
    model: str  # catalogue name
    memory_mib: int
    mig_enabled: bool
    healthy: bool = True
    used_milli: int = 0
    used_memory_mib: int = 0
    mig_used_mask: int = 0  # bit i set: MIG memory slice i is occupied
    mig_used_compute: int = 0
    mig_profile_counts: dict[str, int] = field(default_factory=dict)
    nvlink_peers: tuple[int, ...] = ()
    # Models whose weights are loaded on this GPU (canonical names), and the
    # subset that is warm standby (loaded, not serving).
    resident_models: frozenset[str] = frozenset()
    standby_models: frozenset[str] = frozenset()

    @property
    def free_milli(self) -> int:
        return 1000 - self.used_milli

    @property
    def free_memory_mib(self) -> int:
        return self.memory_mib - self.used_memory_mib

    @property
    def is_empty(self) -> bool:
        return self.used_milli == 0 and self.used_memory_mib == 0 and self.mig_used_mask == 0


@dataclass
class NodeView:
    name: str
    schedulable: bool = True  # False when cordoned, draining or unreachable
    labels: dict[str, str] = field(default_factory=dict)
    gpus: list[GpuView] = field(default_factory=list)
    # Models warm on the node off the GPUs: in host RAM (page cache) or on local disk.
    host_ram_models: frozenset[str] = frozenset()
    local_disk_models: frozenset[str] = frozenset()
    # Sizes the agent reported, by model (absent: unknown, use the LLM catalogue's).
    model_sizes: dict[str, int] = field(default_factory=dict)

    def warm_models(self) -> set[str]:
        """Every model warm on this node in any tier."""
        on_gpus = (m for gpu in self.gpus for m in gpu.resident_models)
        return {*on_gpus, *self.host_ram_models, *self.local_disk_models}

    # Host resources; a capacity of 0 means "not tracked": anything fits.
    cpu_milli: int = 0
    memory_mib: int = 0
    used_cpu_milli: int = 0
    used_memory_mib: int = 0

    @property
    def free_cpu_milli(self) -> int:
        return self.cpu_milli - self.used_cpu_milli

    @property
    def free_memory_mib(self) -> int:
        return self.memory_mib - self.used_memory_mib


@dataclass(frozen=True)
class FleetStructure:
    """Facts about the fleet that no usage, health or cordon changes: what could ever fit."""

    models: frozenset[str]
    max_memory_mib: dict[str, int]  # per model, over GPUs not in MIG mode
    max_gpus_per_node: dict[str, int]  # per model, GPUs not in MIG mode on one node
    mig_models: frozenset[str]  # models with at least one GPU in MIG mode
    # Per model: the nodes holding a GPU of it (fleet order), and its GPU count.
    model_nodes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    model_gpus: dict[str, int] = field(default_factory=dict)
    mixed_nodes: frozenset[str] = frozenset()  # nodes holding GPUs of more than one model
    _holding: dict[tuple[str, ...], tuple[str, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def nodes_holding(self, models: tuple[str, ...]) -> tuple[str, ...]:
        """Nodes holding a GPU of any of `models`, each once; memoised per models tuple
        (a structure lives until the fleet's shape changes, and requests reuse few tuples)."""
        found = self._holding.get(models)
        if found is None:
            runs = [self.model_nodes.get(m, ()) for m in models]
            found = runs[0] if len(runs) == 1 else tuple(itertools.chain.from_iterable(runs))
            if len(runs) > 1 and self.mixed_nodes:
                found = tuple(dict.fromkeys(found))
            if len(self._holding) >= 64:
                self._holding.clear()
            self._holding[models] = found
        return found


@dataclass(slots=True)
class _Usage:
    milli: int
    memory_mib: int
    mig_mask: int
    mig_compute: int
    mig_counts: dict[str, int]


class FleetSnapshot:
    """Nodes and GPUs with their usage, plus indexes that list placement candidates best fit first.

    Only GPUs that are healthy and on a schedulable node are indexed:
    - whole GPUs: per model, each node's empty GPUs, and nodes bucketed by their number;
    - fractions: per model, (free memory, free milli, id) kept sorted, for
      GPUs not in MIG mode with some compute free;
    - MIG: per model, GPU ids bucketed by their used-slice mask.
    """

    def __init__(self) -> None:
        self.nodes: dict[str, NodeView] = {}
        self.gpus: dict[int, GpuView] = {}
        # Dicts used as insertion-ordered sets keep the walk order deterministic.
        self._idle: dict[str, dict[str, dict[int, None]]] = {}
        self._idle_buckets: dict[str, dict[int, dict[str, None]]] = {}
        self._fractions: dict[str, list[tuple[int, int, int]]] = {}
        self._fraction_keys: dict[int, tuple[int, int, int]] = {}
        self._mig: dict[str, dict[int, dict[int, None]]] = {}
        self._mig_masks: dict[int, int] = {}
        # Model -> nodes where it is warm in any tier (warm placement walks these first).
        self._warm: dict[str, dict[str, None]] = {}
        self._structure: FleetStructure | None = None
        # Nodes grouped by identical state (see node_classes); None until first asked for.
        self._classes: NodeClasses | None = None

    # -- fleet changes ---------------------------------------------------------

    def upsert_node(self, node: NodeView) -> None:
        """Add or replace a node and all its GPUs; the snapshot keeps its own copies.

        A GPU id still held by another node is a ValueError: remove that node first.
        """
        ids = [gpu.id for gpu in node.gpus]
        if len(set(ids)) != len(ids):
            raise ValueError(f"node {node.name} lists a GPU id twice")
        for gpu in node.gpus:
            if gpu.node != node.name:
                raise ValueError(f"GPU {gpu.id} names node {gpu.node}, not {node.name}")
            owner = self.gpus.get(gpu.id)
            if owner is not None and owner.node != node.name:
                raise ValueError(f"GPU {gpu.id} already belongs to node {owner.node}")
        old = self.nodes.get(node.name)
        # A node reloaded for its usage keeps the fleet's structure: recomputing
        # it is a scan of every GPU (tens of ms at 100,000), once per batch.
        structure = self._structure if old is not None and _shape(old) == _shape(node) else None
        if old is not None:
            self.remove_node(node.name)
        stored = _copy_node(node, [_copy_gpu(g) for g in node.gpus])
        self.nodes[stored.name] = stored
        for gpu in stored.gpus:
            self.gpus[gpu.id] = gpu
            self._index(gpu)
        for model in stored.warm_models():
            self._warm.setdefault(model, {})[stored.name] = None
        self._structure = structure
        self._reclass(stored.name)

    def remove_node(self, name: str) -> None:
        """Drop a node and its GPUs; KeyError if unknown (as for the two setters below)."""
        node = self.nodes.pop(name)
        for gpu in node.gpus:
            self._unindex(gpu)
            del self.gpus[gpu.id]
        for model in node.warm_models():
            nodes = self._warm[model]
            del nodes[name]
            if not nodes:
                del self._warm[model]
        self._structure = None
        self._reclass(name)

    def set_node_schedulable(self, name: str, schedulable: bool) -> None:
        node = self.nodes[name]
        for gpu in node.gpus:
            self._unindex(gpu)
        node.schedulable = schedulable
        for gpu in node.gpus:
            self._index(gpu)
        self._reclass(name)

    def set_gpu_health(self, gpu_id: int, healthy: bool) -> None:
        gpu = self.gpus[gpu_id]
        self._unindex(gpu)
        gpu.healthy = healthy
        self._index(gpu)
        self._reclass(gpu.node)

    def reserve(self, claims: Iterable[Claim]) -> None:
        """Apply claims; raise ValueError, applying none, if any does not fit."""
        self._apply(self._plan(claims, release=False))

    def release(self, claims: Iterable[Claim]) -> None:
        """Undo reserve; raise ValueError, applying none, if any was not held."""
        self._apply(self._plan(claims, release=True))

    def reserve_placement(
        self, node: str, claims: Iterable[Claim], cpu_milli: int = 0, memory_mib: int = 0
    ) -> None:
        """Apply a placement: its GPU claims and its host CPU and memory on `node`.

        ValueError, applying nothing, if a claim does not fit, names another node, or
        the node's tracked CPU or memory would overflow.
        """
        self._apply_placement(node, list(claims), cpu_milli, memory_mib, release=False)

    def release_placement(
        self, node: str, claims: Iterable[Claim], cpu_milli: int = 0, memory_mib: int = 0
    ) -> None:
        """Undo reserve_placement; ValueError, applying nothing, if it was not held."""
        self._apply_placement(node, list(claims), cpu_milli, memory_mib, release=True)

    def node_classes(self) -> dict[int, dict[str, None]]:
        """Nodes grouped by identical state (host resources, GPUs' usage, health, cordon).

        Two nodes of one class score the same under any state-only policy, so a
        policy can score each class once. Keys are ids of a state, valid while
        class_token stays the same. Tracking starts on the first call and then
        costs one small sort per changed node.
        """
        if self._classes is None:
            self._classes = NodeClasses()
            for name, node in self.nodes.items():
                self._classes.update(name, node)
        return self._classes.members

    def node_class_changes(self, version: int) -> tuple[int, list[int] | None]:
        """The classes' version now, and the ids of the classes that appeared or emptied
        since `version` (None: too far back, look at every class): see NodeClasses."""
        self.node_classes()
        assert self._classes is not None
        return self._classes.version, self._classes.changed_since(version)

    def node_class_gpu_states(self) -> dict[int, int]:
        """Class id -> an id of its GPUs' state alone (same token): classes that differ only
        in host CPU or memory share it, and so do the GPUs a request could take there."""
        self.node_classes()
        assert self._classes is not None
        return self._classes.gpu_states

    @property
    def class_token(self) -> object:
        """Changes whenever node_classes' ids could name other states."""
        self.node_classes()
        assert self._classes is not None
        return self._classes.token

    def copy(self) -> FleetSnapshot:
        """An independent deep copy (indexes included, so no re-sorting)."""
        new = FleetSnapshot()
        for node in self.nodes.values():
            gpus = [_copy_gpu(g) for g in node.gpus]
            new.nodes[node.name] = _copy_node(node, gpus)
            new.gpus.update((g.id, g) for g in gpus)
        new._idle = {
            m: {name: dict(ids) for name, ids in nodes.items()} for m, nodes in self._idle.items()
        }
        new._idle_buckets = {
            m: {k: dict(names) for k, names in buckets.items()}
            for m, buckets in self._idle_buckets.items()
        }
        new._fractions = {m: list(keys) for m, keys in self._fractions.items()}
        new._fraction_keys = dict(self._fraction_keys)
        new._mig = {
            m: {mask: dict(ids) for mask, ids in buckets.items()}
            for m, buckets in self._mig.items()
        }
        new._mig_masks = dict(self._mig_masks)
        new._warm = {m: dict(nodes) for m, nodes in self._warm.items()}
        new._structure = self._structure
        return new

    # -- what placement reads --------------------------------------------------

    @property
    def structure(self) -> FleetStructure:
        if self._structure is None:
            self._structure = _structure_of(self.gpus.values(), self.nodes.values())
        return self._structure

    def free_whole_gpus(self, model: str, node: str) -> int:
        """Empty, healthy GPUs of `model` not in MIG mode on `node` (0 if cordoned)."""
        return len(self._idle.get(model, {}).get(node, ()))

    def iter_whole_candidates(
        self, models: Iterable[str], min_free: int
    ) -> Iterator[tuple[NodeView, list[GpuView]]]:
        """(node, its empty GPUs of one model) with at least `min_free` of them, fewest first.

        A node holding several of the models comes once per model.
        """
        by_model = [(m, self._idle_buckets[m]) for m in models if self._idle_buckets.get(m)]
        most = max((max(buckets) for _, buckets in by_model), default=0)
        for free in range(min_free, most + 1):
            for model, buckets in by_model:
                for name in buckets.get(free, ()):
                    ids = self._idle[model][name]
                    yield self.nodes[name], [self.gpus[i] for i in ids]

    def warm_nodes(self, model: str) -> list[NodeView]:
        """Nodes where `model` is warm in any tier (schedulable or not), in report order."""
        return [self.nodes[name] for name in self._warm.get(model, ())]

    def idle_gpus(self, model: str, node: str) -> list[GpuView]:
        """The empty, healthy GPUs of `model` not in MIG mode on `node` (none if cordoned)."""
        return [self.gpus[i] for i in self._idle.get(model, {}).get(node, ())]

    def iter_fraction_gpus(self, models: Iterable[str], memory_mib: int) -> Iterator[GpuView]:
        """GPUs not in MIG mode with at least `memory_mib` free, least free memory first."""
        runs: list[Iterator[tuple[int, int, int]]] = []
        for model in models:
            keys = self._fractions.get(model)
            if keys:
                first = bisect_left(keys, (memory_mib, -1, -1))
                runs.append(map(keys.__getitem__, range(first, len(keys))))
        merged = runs[0] if len(runs) == 1 else heapq.merge(*runs)
        for _, _, gpu_id in merged:
            yield self.gpus[gpu_id]

    def largest_fraction_memory_mib(self, models: Iterable[str]) -> int:
        """Most free memory on a GPU of `models` that could take a fraction now (healthy,
        on a schedulable node, not in MIG mode, some compute free): read off the index."""
        return max((keys[-1][0] for m in models if (keys := self._fractions.get(m))), default=0)

    def iter_mig_gpus(self, models: Iterable[str], masks: Iterable[int]) -> Iterator[GpuView]:
        """MIG-mode GPUs of `models` whose used-slice mask is in `masks`, in mask order."""
        by_model = [self._mig[m] for m in models if m in self._mig]
        if not by_model:
            return
        for mask in masks:
            for buckets in by_model:
                ids = buckets.get(mask)
                if ids:
                    for gpu_id in ids:
                        yield self.gpus[gpu_id]

    # -- claims ----------------------------------------------------------------

    def _plan(self, claims: Iterable[Claim], release: bool) -> dict[int, _Usage]:
        """The usage each touched GPU would have after the claims; ValueError if any is wrong."""
        plan: dict[int, _Usage] = {}
        sign = -1 if release else 1
        for claim in claims:
            gpu = self.gpus.get(claim.gpu_id)
            if gpu is None:
                raise ValueError(f"GPU {claim.gpu_id} is not in the fleet")
            usage = plan.get(gpu.id)
            if usage is None:
                usage = plan[gpu.id] = _Usage(
                    gpu.used_milli,
                    gpu.used_memory_mib,
                    gpu.mig_used_mask,
                    gpu.mig_used_compute,
                    dict(gpu.mig_profile_counts),
                )
            if claim.mig_profile is None:
                _plan_share(gpu, usage, claim, sign)
            else:
                _plan_mig(gpu, usage, claim, release)
        return plan

    def _apply_placement(
        self, name: str, claims: list[Claim], cpu_milli: int, memory_mib: int, release: bool
    ) -> None:
        node = self.nodes[name]
        for claim in claims:
            gpu = self.gpus.get(claim.gpu_id)
            if gpu is None or gpu.node != name:
                raise ValueError(f"GPU {claim.gpu_id} is not on node {name}")
        sign = -1 if release else 1
        cpu = node.used_cpu_milli + sign * cpu_milli
        memory = node.used_memory_mib + sign * memory_mib
        if cpu < 0 or (node.cpu_milli and cpu > node.cpu_milli):
            raise ValueError(f"node {name} would have {cpu} of {node.cpu_milli} milli-CPU in use")
        if memory < 0 or (node.memory_mib and memory > node.memory_mib):
            raise ValueError(f"node {name} would have {memory} of {node.memory_mib} MiB in use")
        plan = self._plan(claims, release=release)
        node.used_cpu_milli = cpu
        node.used_memory_mib = memory
        self._apply(plan)
        if not plan:
            self._reclass(name)

    def _apply(self, plan: dict[int, _Usage]) -> None:
        touched: set[str] = set()
        for gpu_id, usage in plan.items():
            gpu = self.gpus[gpu_id]
            self._unindex(gpu)
            gpu.used_milli = usage.milli
            gpu.used_memory_mib = usage.memory_mib
            gpu.mig_used_mask = usage.mig_mask
            gpu.mig_used_compute = usage.mig_compute
            gpu.mig_profile_counts = usage.mig_counts
            self._index(gpu)
            touched.add(gpu.node)
        for name in touched:
            self._reclass(name)

    def _reclass(self, name: str) -> None:
        if self._classes is not None:
            self._classes.update(name, self.nodes.get(name))

    # -- indexes ---------------------------------------------------------------

    def _index(self, gpu: GpuView) -> None:
        if not (gpu.healthy and self.nodes[gpu.node].schedulable):
            return
        if gpu.mig_enabled:
            self._mig_masks[gpu.id] = gpu.mig_used_mask
            buckets = self._mig.setdefault(gpu.model, {})
            buckets.setdefault(gpu.mig_used_mask, {})[gpu.id] = None
            return
        if gpu.is_empty:
            self._file_idle(gpu, idle=True)
        if gpu.free_milli > 0:
            key = (gpu.free_memory_mib, gpu.free_milli, gpu.id)
            self._fraction_keys[gpu.id] = key
            insort(self._fractions.setdefault(gpu.model, []), key)

    def _unindex(self, gpu: GpuView) -> None:
        """Remove what _index filed for this GPU (from its records, not its current state)."""
        mask = self._mig_masks.pop(gpu.id, None)
        if mask is not None:
            buckets = self._mig[gpu.model]
            del buckets[mask][gpu.id]
            if not buckets[mask]:
                del buckets[mask]
        if gpu.id in self._idle.get(gpu.model, {}).get(gpu.node, ()):
            self._file_idle(gpu, idle=False)
        key = self._fraction_keys.pop(gpu.id, None)
        if key is not None:
            keys = self._fractions[gpu.model]
            del keys[bisect_left(keys, key)]

    def _file_idle(self, gpu: GpuView, idle: bool) -> None:
        """Add or drop an empty GPU, moving its node to the bucket of its new idle count."""
        nodes = self._idle.setdefault(gpu.model, {})
        buckets = self._idle_buckets.setdefault(gpu.model, {})
        ids = nodes.setdefault(gpu.node, {})
        old = len(ids)
        if idle:
            ids[gpu.id] = None
        else:
            del ids[gpu.id]
        if old:
            del buckets[old][gpu.node]
            if not buckets[old]:
                del buckets[old]
        if ids:
            buckets.setdefault(len(ids), {})[gpu.node] = None
        else:
            del nodes[gpu.node]


def _shape(node: NodeView) -> tuple[tuple[str, bool, int], ...]:
    """What FleetStructure reads of a node."""
    return tuple((g.model, g.mig_enabled, g.memory_mib) for g in node.gpus)


def _copy_node(node: NodeView, gpus: list[GpuView]) -> NodeView:
    return replace(node, labels=dict(node.labels), gpus=gpus, model_sizes=dict(node.model_sizes))


def _copy_gpu(gpu: GpuView) -> GpuView:
    return replace(gpu, mig_profile_counts=dict(gpu.mig_profile_counts))


class SnapshotConflict(ValueError):
    """Claims that do not fit what the snapshot holds: over capacity, or the
    release of a claim it does not know. To a replica's allocator that means
    its snapshot is behind the database (another replica's change not yet
    notified): reload and retry, as for a lost race."""


def _plan_share(gpu: GpuView, usage: _Usage, claim: Claim, sign: int) -> None:
    """A whole or fractional claim: counters stay within 0..1000 milli and 0..memory."""
    if gpu.mig_enabled:
        raise ValueError(f"GPU {gpu.id} is in MIG mode and takes only MIG claims")
    if claim.milli < 0 or claim.memory_mib < 0:
        raise ValueError(f"claim on GPU {gpu.id} has a negative amount")
    usage.milli += sign * claim.milli
    usage.memory_mib += sign * claim.memory_mib
    if not 0 <= usage.milli <= 1000:
        raise SnapshotConflict(f"GPU {gpu.id} would have {usage.milli} of 1000 milli-GPU in use")
    if not 0 <= usage.memory_mib <= gpu.memory_mib:
        raise SnapshotConflict(
            f"GPU {gpu.id} would have {usage.memory_mib} of {gpu.memory_mib} MiB in use"
        )


def _plan_mig(gpu: GpuView, usage: _Usage, claim: Claim, release: bool) -> None:
    """A MIG claim: a real profile of the model at a valid start, slices free (or held)."""
    if not gpu.mig_enabled:
        raise ValueError(f"GPU {gpu.id} is not in MIG mode")
    name = claim.mig_profile or ""
    profile = profile_for(gpu.model, name)
    if profile is None:
        raise ValueError(f"profile {name} does not exist on {gpu.model}")
    if claim.mig_start not in profile.valid_starts:
        raise ValueError(f"{name} cannot start at slot {claim.mig_start}")
    if (claim.mig_size, claim.mig_compute) != (profile.memory_slices, profile.compute_slices):
        raise ValueError(f"claim size does not match profile {name}")
    slots = profile.slot_mask(claim.mig_start)
    count = usage.mig_counts.get(name, 0)
    if release:
        if usage.mig_mask & slots != slots or count == 0:
            raise SnapshotConflict(f"GPU {gpu.id} holds no {name} at slot {claim.mig_start}")
        usage.mig_mask &= ~slots
        usage.mig_compute -= profile.compute_slices
        if count == 1:
            del usage.mig_counts[name]
        else:
            usage.mig_counts[name] = count - 1
        return
    if usage.mig_mask & slots:
        raise ValueError(f"{name} at slot {claim.mig_start} overlaps an instance on GPU {gpu.id}")
    if count >= profile.max_count:
        raise ValueError(f"GPU {gpu.id} already holds {count} {name}, the most it can")
    if usage.mig_compute + profile.compute_slices > MIG_COMPUTE_SLICES:
        raise ValueError(f"GPU {gpu.id} has too few compute slices left for {name}")
    usage.mig_mask |= slots
    usage.mig_compute += profile.compute_slices
    usage.mig_counts[name] = count + 1


def _structure_of(gpus: Iterable[GpuView], nodes: Iterable[NodeView]) -> FleetStructure:
    max_memory: dict[str, int] = {}
    mig_models: set[str] = set()
    for gpu in gpus:
        if gpu.mig_enabled:
            mig_models.add(gpu.model)
        else:
            max_memory[gpu.model] = max(max_memory.get(gpu.model, 0), gpu.memory_mib)
    max_per_node: dict[str, int] = {}
    model_nodes: dict[str, list[str]] = {}
    model_gpus: Counter[str] = Counter()
    mixed: set[str] = set()
    for node in nodes:
        on_node = Counter(g.model for g in node.gpus if not g.mig_enabled)
        for model, count in on_node.items():
            max_per_node[model] = max(max_per_node.get(model, 0), count)
        held = Counter(g.model for g in node.gpus)
        model_gpus.update(held)
        for model in held:
            model_nodes.setdefault(model, []).append(node.name)
        if len(held) > 1:
            mixed.add(node.name)
    return FleetStructure(
        models=frozenset(max_memory) | mig_models,
        max_memory_mib=max_memory,
        max_gpus_per_node=max_per_node,
        mig_models=frozenset(mig_models),
        model_nodes={m: tuple(names) for m, names in model_nodes.items()},
        model_gpus=dict(model_gpus),
        mixed_nodes=frozenset(mixed),
    )
