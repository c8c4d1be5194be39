"""How the allocator fills a batch from what waits: a flood shares it."""

from __future__ import annotations

from scheduler.allocator import commands as cmd
from scheduler.domain.allocation import AllocationSpec
from scheduler.domain.requests import FractionDemand


def _allocate(tenant: str, n: int) -> cmd.Allocate:
    return cmd.Allocate(AllocationSpec(tenant, f"r{n}", FractionDemand(100, 1024)))


def test_a_flood_from_one_tenant_leaves_room_for_others() -> None:
    flood = [_allocate("flood", i) for i in range(100)]
    probe = _allocate("probe", 0)
    release = cmd.Release("a-1", "done")
    batch, rest = cmd.take_batch([*flood, probe, release], max_batch=256, per_tenant=32)
    assert batch == [*flood[:32], probe, release]
    assert rest == flood[32:], "the rest keeps its order for the next batch"
    again, left = cmd.take_batch(rest, max_batch=256, per_tenant=32)
    assert again == flood[32:64] and left == flood[64:]


def test_the_batch_size_still_bounds_everything() -> None:
    many = [_allocate(f"t{i}", i) for i in range(10)]
    batch, rest = cmd.take_batch(many, max_batch=4, per_tenant=32)
    assert batch == many[:4] and rest == many[4:]
