"""When a replica's full garbage-collection passes run (allocator/collector.py)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from scheduler.allocator.collector import (
    FORCED_AFTER_S,
    FULL_PASS_EVERY_S,
    FullPasses,
    full_pass_due,
    take_over_full_passes,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


@pytest.fixture
def frozen_restored() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_an_idle_allocator_runs_a_full_pass_once_a_period() -> None:
    assert not full_pass_due(now=FULL_PASS_EVERY_S - 1, last=0.0, idle=True)
    assert full_pass_due(now=FULL_PASS_EVERY_S, last=0.0, idle=True)


def test_a_busy_allocator_waits_for_an_idle_moment_until_forced() -> None:
    assert not full_pass_due(now=FULL_PASS_EVERY_S * 2, last=0.0, idle=False)
    assert not full_pass_due(now=FORCED_AFTER_S - 1, last=0.0, idle=False)
    assert full_pass_due(now=FORCED_AFTER_S, last=0.0, idle=False)


@pytest.mark.usefixtures("frozen_restored")
def test_full_passes_run_when_due_and_freeze_what_survives() -> None:
    clock = FakeClock()
    passes = FullPasses(clock)
    passes.maybe_run(idle=True)
    assert passes.runs == 0
    clock.now += FULL_PASS_EVERY_S
    passes.maybe_run(idle=False)
    assert passes.runs == 0
    passes.maybe_run(idle=True)
    assert passes.runs == 1
    assert gc.get_freeze_count() > 0
    passes.maybe_run(idle=True)  # the period starts again
    assert passes.runs == 1


class Cyclic:
    def __init__(self) -> None:
        self.me = self


@pytest.mark.usefixtures("frozen_restored")
def test_a_reload_unfreezes_so_frozen_garbage_is_freed() -> None:
    old = Cyclic()
    alive = weakref.ref(old)
    gc.freeze()  # as a previous pass froze the old snapshot
    del old
    FullPasses(FakeClock()).run()
    assert alive() is not None  # a pass alone never looks at what is frozen
    FullPasses(FakeClock()).after_reload()
    assert alive() is None


@pytest.mark.usefixtures("thresholds")
def test_a_replica_process_turns_automatic_full_passes_off() -> None:
    young, middle, _ = gc.get_threshold()
    take_over_full_passes()
    assert gc.get_threshold()[:2] == (young, middle)  # young generations as before
    assert gc.get_threshold()[2] >= 100_000
