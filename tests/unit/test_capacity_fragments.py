"""The vectorised sharing-by-capacity fragment equals the Python loop, bit for bit."""

from __future__ import annotations

import functools

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.placement.capacity_fragments import CapacityFragments
from scheduler.placement.fragmentation import (
    UNTRACKED_CPU,
    PodType,
    RequestMix,
    node_fragment_sharing_by_capacity,
)
from scheduler.sim.trace import read_pods
from scheduler.sim.traces import resolve_pods

MODELS = ("G2", "T4", "V100M32")
TYPES = (
    (PodType(cpu_milli=4000, num_gpu=1, gpu_milli=500, memory_mib=2048), 0.3),
    (PodType(cpu_milli=0, num_gpu=1, gpu_milli=250, gpu_models=frozenset({"T4"})), 0.1),
    (PodType(cpu_milli=2000, num_gpu=0, gpu_milli=0, memory_mib=0), 0.15),
    (PodType(cpu_milli=1000, num_gpu=2, gpu_milli=1000, gpu_models=frozenset({"T4"})), 0.2),
    (PodType(cpu_milli=8000, num_gpu=1, gpu_milli=1000, memory_mib=65536), 0.05),
    (PodType(cpu_milli=500, num_gpu=1, gpu_milli=330, memory_mib=0), 0.2),
)
gpu_states = st.lists(
    st.tuples(st.sampled_from(MODELS), st.sampled_from((0, 1000)) | st.integers(0, 1000)),
    max_size=8,
).map(lambda gpus: tuple(sorted(gpus)))
resources = st.sampled_from((UNTRACKED_CPU, 0, -1)) | st.integers(0, 130_000)


@settings(max_examples=500, deadline=None)
@given(gpus=gpu_states, free_cpu=resources, free_memory=resources)
def test_equals_the_loop_on_any_node_state(
    gpus: tuple[tuple[str, int], ...], free_cpu: int, free_memory: int
) -> None:
    vectorised = CapacityFragments(TYPES)
    # Twice: the second answer comes from the memos of GPU states and single GPUs.
    for _ in range(2):
        got = vectorised(TYPES, gpus, free_cpu, free_memory)
        assert got == node_fragment_sharing_by_capacity(TYPES, gpus, free_cpu, free_memory)
        assert type(got) is float


@settings(max_examples=300, deadline=None)
@given(gpus=gpu_states, free_cpu=resources, free_memory=resources)
def test_equals_the_loop_for_the_default_traces_types(
    gpus: tuple[tuple[str, int], ...], free_cpu: int, free_memory: int
) -> None:
    types = _trace_types()
    got = _trace_fragments()(types, gpus, free_cpu, free_memory)
    assert got == node_fragment_sharing_by_capacity(types, gpus, free_cpu, free_memory)


@settings(max_examples=200, deadline=None)
@given(states=st.lists(st.tuples(gpu_states, resources, resources), max_size=12))
def test_many_states_at_once_equal_one_at_a_time(
    states: list[tuple[tuple[tuple[str, int], ...], int, int]],
) -> None:
    types = _trace_types()
    expected = [node_fragment_sharing_by_capacity(types, *state) for state in states]
    assert CapacityFragments(types).many(states) == expected  # every memo empty
    assert _trace_fragments().many(states) == expected  # memos of earlier examples


def test_no_types_or_no_free_gpu_is_no_fragment() -> None:
    assert CapacityFragments(())((), (("G2", 500),), 1000, 1000) == 0.0
    assert CapacityFragments(TYPES)(TYPES, (("G2", 0), ("T4", 0)), 1000, 1000) == 0.0


@functools.cache
def _trace_types() -> tuple[tuple[PodType, float], ...]:
    """The default trace's ~150 memory-aware types (the default policy's mix)."""
    pods = read_pods(resolve_pods("default"))
    return RequestMix.from_requests(p.request() for p in pods).typical(1.0, memory_aware=True)


@functools.cache
def _trace_fragments() -> CapacityFragments:
    return CapacityFragments(_trace_types())
