"""Allocation ids: random, distinct, the same shape as before."""

from __future__ import annotations

import re

from scheduler.allocator.batch import RandomIds, new_allocation_id


def test_ids_are_distinct_across_refills() -> None:
    ids = RandomIds(size=8, per_read=4)
    drawn = [ids.next() for _ in range(1000)]
    assert len(set(drawn)) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in drawn)


def test_allocation_ids_keep_their_shape() -> None:
    assert re.fullmatch(r"a-[0-9a-f]{16}", new_allocation_id())
