"""The allocator's per-tenant counts of waiting allocations (the cap's input)."""

from __future__ import annotations

from scheduler.allocator.pending_counts import COUNT_TTL_S, REFUSE_WITHIN_S, PendingCounts


class Timer:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_count_admits_for_a_while_and_refuses_only_when_just_read() -> None:
    timer = Timer()
    counts = PendingCounts(timer)
    assert counts.usable("a") is None and counts.unknown(["b", "a", "a"]) == ["a", "b"]
    counts.read({"a": 7, "b": 0})
    assert counts.usable("a") == 7 and counts.may_refuse_by("a")
    timer.now += REFUSE_WITHIN_S + 0.1
    assert counts.usable("a") == 7, "still good enough to admit by"
    assert not counts.may_refuse_by("a"), "a refusal needs a recent count"
    timer.now += COUNT_TTL_S
    assert counts.usable("a") is None and counts.unknown(["a"]) == ["a"]


def test_what_this_replica_queues_is_counted_up_from_the_read() -> None:
    timer = Timer()
    counts = PendingCounts(timer)
    counts.read({"a": 3}, at=timer.now - 1)
    counts.add({"a": 2, "unread": 5})
    assert counts.usable("a") == 5
    assert counts.usable("unread") is None, "no base to count from"
    timer.now += COUNT_TTL_S - 0.5
    assert counts.usable("a") is None, "adding does not make a count fresher"
