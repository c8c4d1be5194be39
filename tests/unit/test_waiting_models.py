"""The allocator's hint of which GPU models waiting requests may use."""

from __future__ import annotations

from scheduler.allocator.waiting import WaitingModels


def test_unknown_means_look() -> None:
    assert WaitingModels().could_use({"L4"})


def test_only_models_that_something_waits_for() -> None:
    waiting = WaitingModels.nothing()
    assert waiting.empty and not waiting.could_use({"L4"})
    waiting.add(["B200", "H200"])
    assert waiting.could_use({"H200"}) and not waiting.could_use({"L4", "A100-80GB"})
    waiting.add([])  # a request for any model
    assert waiting.could_use({"L4"})


def test_widening_and_copies_are_independent() -> None:
    waiting = WaitingModels.nothing()
    copy = waiting.copy()
    copy.widen()
    assert copy.could_use({"L4"}) and not waiting.could_use({"L4"})
