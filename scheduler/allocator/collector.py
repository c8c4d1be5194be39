"""When the garbage collector's full passes run in a scheduler replica.

CPython starts a full pass (every generation) by itself once enough objects
have survived into the oldest generation. In a replica those survivors are
long-lived state (the fleet snapshot's node views, caches, the pending
queue's bookkeeping), not garbage: under `bench.pending_flood` the leader ran
one full pass every ~5 s, each took about 100 ms at 10,000 GPUs and freed
nothing, and whatever batch was running waited: they were the probe's p99.

So a replica's process turns the automatic full passes off
(`take_over_full_passes`, called by `gpupool serve`), and the allocator's
thread runs one itself when it has nothing queued, at most every
FULL_PASS_EVERY_S (and after FORCED_AFTER_S even if it is never idle). Each
pass ends with `gc.freeze()`: what survived it is long-lived, and later passes
skip it. The young generations are collected as usual. Objects frozen are
still freed by reference counting; only a cycle among them waits for the next
full snapshot load, which unfreezes (Allocator._refresh).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

FULL_PASS_EVERY_S = 60.0
FORCED_AFTER_S = 600.0
# Collections of generation 1 before CPython would start a full pass: never, in practice.
_AUTOMATIC_FULL_PASSES_OFF = 1_000_000


def take_over_full_passes() -> None:
    """Leave full passes to FullPasses (process-wide: for a replica's process)."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, _AUTOMATIC_FULL_PASSES_OFF)


def full_pass_due(now: float, last: float, idle: bool) -> bool:
    """Whether to run a full pass now, `last` being when the previous one ran."""
    waited = now - last
    return waited >= FORCED_AFTER_S or (idle and waited >= FULL_PASS_EVERY_S)


class FullPasses:
    """The allocator thread's full passes, at its idle moments."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = clock()
        self.runs = 0

    def maybe_run(self, idle: bool) -> None:
        if full_pass_due(self._clock(), self._last, idle):
            self.run()

    def run(self) -> None:
        """A full pass; what survives it is frozen (long-lived from now on)."""
        gc.collect()
        gc.freeze()
        self._last = self._clock()
        self.runs += 1

    def after_reload(self) -> None:
        """A whole new snapshot: unfreeze (the old one is garbage now), collect, freeze."""
        gc.unfreeze()
        self.run()
