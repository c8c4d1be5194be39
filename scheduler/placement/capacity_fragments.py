"""node_fragment_sharing_by_capacity for one tuple of typical types, vectorised over the types.

The default policy spends most of a simulated seed in that function: ~150 types
for each of ~100,000 node states. Here the types become arrays once per mix
version, and what depends only on the GPUs (room per type) is kept per GPU state,
summed from each GPU's part kept per (model, free milli), so a node state costs a
few numpy operations instead of a Python loop.

The result is bit-identical to the loop: every term is the same IEEE product,
and the terms are added left to right (np.cumsum), not pairwise (np.sum), since
an FGD score is an integer of a difference that is often exactly zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # fragmentation.py imports this module; the types are only annotations
    from scheduler.placement.fragmentation import GpuState, PodType

# Bound on each memo (GPU states, single GPUs), so a long-lived server stays small.
MAX_STATES = 200_000
# A limit above any node's free milli-GPU (and small enough to multiply by a type's
# milli in int64): "CPU and memory do not limit this type".
RESOURCE_CAP = 1 << 40

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


class _Resource(NamedTuple):
    """CPU or memory as the types ask for it, with what _resource_limit needs ready."""

    asked: IntArray
    divisor: IntArray  # asked, 1 where none is asked
    by_room: npt.NDArray[np.bool_]  # limited by free // asked: sharing types asking for some
    fixed: IntArray  # the limit of the other types (when not short)


class CapacityFragments:
    """Callable as node_fragment_sharing_by_capacity(types, gpus, free_cpu, free_memory).

    Per type, the milli it can take on a node is min(what the GPUs allow, what CPU
    and memory allow): a sharing type min(room by GPUs, free CPU // its CPU, free
    memory // its memory) x its milli, a whole type the free milli of the GPUs it
    fits (if enough do), nothing where its CPU or memory does not fit. The GPUs' side
    is memoised by GPU state (those repeat far more often than whole node states);
    with the states measured together, a node state costs a row of two minimums, a
    subtraction, a product and a running sum over the types.
    """

    def __init__(self, types: Sequence[tuple[PodType, float]]) -> None:
        self._share: FloatArray = np.array([share for _, share in types], dtype=np.float64)
        self._gpu_type = np.array(
            [bool(t.num_gpu and t.gpu_milli) for t, _ in types], dtype=np.bool_
        )
        self._asks_gpus = bool(self._gpu_type.any())
        self._models = [t.gpu_models for t, _ in types]  # allowed models, none: any
        self._need = np.array([t.gpu_milli for t, _ in types], dtype=np.int64)
        self._divisor = np.maximum(self._need, 1)
        self._sharing_type = self._gpu_type & (self._need < 1000)
        self._num_gpu = np.array([t.num_gpu for t, _ in types], dtype=np.int64)
        self._cpu = self._resource([t.cpu_milli for t, _ in types])
        self._memory = self._resource([t.memory_mib for t, _ in types])
        self._allowed: dict[str, npt.NDArray[np.bool_]] = {}
        self._by_gpu: dict[tuple[str, int], IntArray] = {}
        self._by_gpus: dict[GpuState, tuple[int, IntArray]] = {}

    def __call__(
        self,
        types: Sequence[tuple[PodType, float]],
        gpus: GpuState,
        free_cpu: int,
        free_memory: int,
    ) -> float:
        """The fragment of a node state; `types` must be those given at construction."""
        return self.many([(gpus, free_cpu, free_memory)])[0]

    def many(self, states: Sequence[tuple[GpuState, int, int]]) -> list[float]:
        """The fragment of each (GPUs, free CPU, free memory), all states at once: on ~150
        types numpy's cost per call outweighs its work, so the CPU's and the memory's
        limits are worked out for all in one pass each rather than memoised one by one."""
        fragments = [0.0] * len(states)
        by_gpus = self._by_gpus
        at: list[int] = []
        totals: list[int] = []
        gpu_limits: list[IntArray] = []
        cpus: list[int] = []
        memories: list[int] = []
        for i, (gpus, free_cpu, free_memory) in enumerate(states):
            found = by_gpus.get(gpus)
            if found is None:
                if len(by_gpus) >= MAX_STATES:
                    by_gpus.clear()
                found = by_gpus[gpus] = self._gpu_limit(gpus)
            if found[0]:  # else no GPU is free: no fragment
                at.append(i)
                totals.append(found[0])
                gpu_limits.append(found[1])
                cpus.append(free_cpu)
                memories.append(free_memory)
        if not at or not len(self._share):
            return fragments
        cpu_limits = self._resource_limit(self._cpu, np.array(cpus, dtype=np.int64)[:, None])
        memory_limits = self._resource_limit(
            self._memory, np.array(memories, dtype=np.int64)[:, None]
        )
        taken = np.minimum(np.minimum(np.array(gpu_limits), cpu_limits), memory_limits)
        terms = self._share * (np.array(totals, dtype=np.int64)[:, None] - taken)
        # Along each row, left to right: the same sums as one state's terms.cumsum().
        for i, fragment in zip(at, terms.cumsum(axis=1)[:, -1].tolist(), strict=True):
            fragments[i] = fragment
        return fragments

    def _gpu_limit(self, gpus: GpuState) -> tuple[int, IntArray]:
        """The free milli of the GPUs, and per type the milli the GPUs let it take: a
        sharing type's room (free // milli over allowed GPUs) x its milli, a whole
        type the free milli of the allowed GPUs it fits (0 when too few fit)."""
        total = sum(free for _, free in gpus)
        if total == 0 or not self._asks_gpus:
            return total, np.zeros(len(self._share), dtype=np.int64)
        # np.add.reduce, not .sum(): the same integer sums without .sum's Python wrapper.
        room, fitting, fitting_milli = np.add.reduce(
            np.array([self._gpu_part(gpu) for gpu in gpus]), axis=0
        )
        whole_milli = np.where(fitting >= self._num_gpu, fitting_milli, 0)
        return total, np.where(self._sharing_type, room, whole_milli)

    def _gpu_part(self, gpu: tuple[str, int]) -> IntArray:
        """One GPU's share of _gpu_limit's sums, per type: the room it has for the type
        (free // milli x milli), whether it fits the type (0/1) and then its free milli;
        0 for types it may not take (its model, or no GPU asked). Memoised by (model,
        free): far fewer than GPU states, and the sums over a state's GPUs are exact."""
        part = self._by_gpu.get(gpu)
        if part is None:
            model, free = gpu
            allowed = self._allowed.get(model)
            if allowed is None:
                ok = [not models or model in models for models in self._models]
                allowed = self._allowed[model] = self._gpu_type & np.array(ok, dtype=np.bool_)
            fits = allowed & (free >= self._need)
            room = np.where(allowed, free // self._divisor * self._need, 0)
            if len(self._by_gpu) >= MAX_STATES:
                self._by_gpu.clear()
            part = self._by_gpu[gpu] = np.array([room, fits, np.where(fits, free, 0)])
        return part

    def _resource(self, asked_per_type: list[int]) -> _Resource:
        asked = np.array(asked_per_type, dtype=np.int64)
        # A sharing type asking for none, and every other type: no limit.
        fixed = np.where(self._sharing_type, RESOURCE_CAP * self._need, RESOURCE_CAP)
        return _Resource(asked, np.maximum(asked, 1), self._sharing_type & (asked > 0), fixed)

    def _resource_limit(self, resource: _Resource, free: IntArray) -> IntArray:
        """Per type, the milli one resource (CPU or memory, `free` on the node) lets it
        take: 0 where it is short; for a sharing type asking for some, free // asked x
        its milli; else no limit (RESOURCE_CAP, x its milli for a sharing type). The
        minimum of the CPU's and the memory's is the limit of both, as milli > 0. Given a
        column of frees (one per node state), a row of limits for each."""
        room = np.minimum(free // resource.divisor, RESOURCE_CAP)
        limit = np.where(resource.by_room, room * self._need, resource.fixed)
        return np.where(resource.asked > free, 0, limit)
