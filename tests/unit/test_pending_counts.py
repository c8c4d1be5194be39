"""The allocator's per-tenant counts of waiting allocations (the cap's input)."""

from __future__ import annotations

from scheduler.allocator.pending_counts import COUNT_TTL_S, REFUSE_WITHIN_S, PendingCounts
from scheduler.domain.clock import ManualClock


def counts_on(clock: ManualClock) -> PendingCounts:
    return PendingCounts(lambda: clock.now().timestamp())


def test_a_count_admits_for_a_while_and_refuses_only_when_just_read() -> None:
    clock = ManualClock()
    counts = counts_on(clock)
    assert counts.usable("a") is None and counts.unknown(["b", "a", "a"]) == ["a", "b"]
    counts.read({"a": 7, "b": 0})
    assert counts.usable("a") == 7 and counts.may_refuse_by("a")
    clock.advance(REFUSE_WITHIN_S + 0.1)
    assert counts.usable("a") == 7, "still good enough to admit by"
    assert not counts.may_refuse_by("a"), "a refusal needs a recent count"
    clock.advance(COUNT_TTL_S)
    assert counts.usable("a") is None and counts.unknown(["a"]) == ["a"]


def test_what_this_replica_queues_is_counted_up_from_the_read() -> None:
    clock = ManualClock()
    counts = counts_on(clock)
    counts.read({"a": 3}, at=clock.now().timestamp() - 1)
    counts.add({"a": 2, "unread": 5})
    assert counts.usable("a") == 5
    assert counts.usable("unread") is None, "no base to count from"
    clock.advance(COUNT_TTL_S - 0.5)
    assert counts.usable("a") is None, "adding does not make a count fresher"
