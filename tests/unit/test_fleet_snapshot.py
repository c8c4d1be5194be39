"""FleetSnapshot: counters, claim checks and the placement indexes stay consistent."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable
from dataclasses import replace

import pytest

from scheduler.domain.catalogue import CATALOGUE
from scheduler.domain.fleet import Claim, FleetSnapshot, GpuView, NodeView
from scheduler.domain.mig import profile_for

_ids = itertools.count(1)


def make_node(
    name: str,
    model: str = "H100-80GB",
    count: int = 8,
    *,
    mig: bool = False,
    schedulable: bool = True,
    links: str | Iterable[tuple[int, int]] = "full",
) -> NodeView:
    """A node of `count` GPUs; links "full" (NVSwitch), "none" (PCIe) or explicit index pairs."""
    pairs: set[tuple[int, int]] = set()
    if isinstance(links, str):
        if links == "full":
            pairs = {(a, b) for a in range(count) for b in range(count) if a != b}
    else:
        pairs = {p for a, b in links for p in ((a, b), (b, a))}
    gpus = [
        GpuView(
            id=next(_ids),
            uuid=f"GPU-{name}-{i}",
            node=name,
            index=i,
            model=model,
            memory_mib=CATALOGUE[model].memory_mib,
            mig_enabled=mig,
            nvlink_peers=tuple(sorted(b for a, b in pairs if a == i)),
        )
        for i in range(count)
    ]
    return NodeView(name=name, schedulable=schedulable, gpus=gpus)


def fleet(*nodes: NodeView) -> FleetSnapshot:
    snapshot = FleetSnapshot()
    for node in nodes:
        snapshot.upsert_node(node)
    return snapshot


def whole(gpu: GpuView) -> Claim:
    return Claim(gpu.id, milli=1000, memory_mib=gpu.memory_mib)


def mig_claim(gpu: GpuView, name: str, start: int) -> Claim:
    p = profile_for(gpu.model, name)
    assert p is not None
    return Claim(gpu.id, 0, 0, name, start, p.memory_slices, p.compute_slices)


def usage(snapshot: FleetSnapshot) -> list[tuple[int, int, int, int, int, dict[str, int]]]:
    return [
        (g.id, g.used_milli, g.used_memory_mib, g.mig_used_mask, g.mig_used_compute,
         dict(g.mig_profile_counts))
        for g in snapshot.gpus.values()
    ]  # fmt: skip


def test_upsert_keeps_a_copy_and_replaces_wholesale() -> None:
    node = make_node("n1", count=2)
    snapshot = fleet(node)
    node.gpus[0].used_milli = 500
    assert snapshot.gpus[node.gpus[0].id].used_milli == 0
    replacement = make_node("n1", "L4", count=1, links="none")
    snapshot.upsert_node(replacement)
    assert list(snapshot.gpus) == [replacement.gpus[0].id]
    assert snapshot.free_whole_gpus("H100-80GB", "n1") == 0
    assert snapshot.free_whole_gpus("L4", "n1") == 1


def test_upsert_rejects_a_gpu_owned_by_another_node() -> None:
    first = make_node("n1", count=1)
    snapshot = fleet(first)
    thief = NodeView("n2", gpus=[GpuView(first.gpus[0].id, "x", "n2", 0, "L4", 1024, False)])
    with pytest.raises(ValueError, match="already belongs to node n1"):
        snapshot.upsert_node(thief)


def test_remove_node() -> None:
    snapshot = fleet(make_node("n1", count=2), make_node("n2", count=2))
    snapshot.remove_node("n1")
    assert set(snapshot.nodes) == {"n2"}
    assert {g.node for g in snapshot.gpus.values()} == {"n2"}
    assert [n.name for n, _ in snapshot.iter_whole_candidates(["H100-80GB"], 1)] == ["n2"]


def test_reserve_and_release_whole_gpu() -> None:
    node = make_node("n1", count=4)
    snapshot = fleet(node)
    gpu = snapshot.gpus[node.gpus[1].id]
    snapshot.reserve([whole(gpu)])
    assert (gpu.used_milli, gpu.used_memory_mib) == (1000, gpu.memory_mib)
    assert snapshot.free_whole_gpus("H100-80GB", "n1") == 3
    assert gpu.id not in [g.id for g in snapshot.iter_fraction_gpus(["H100-80GB"], 0)]
    snapshot.release([whole(gpu)])
    assert gpu.is_empty
    assert snapshot.free_whole_gpus("H100-80GB", "n1") == 4


def test_fraction_claims_add_up_to_the_limits() -> None:
    node = make_node("n1", "L4", count=1, links="none")
    snapshot = fleet(node)
    gpu_id = node.gpus[0].id
    half = Claim(gpu_id, milli=500, memory_mib=1024)
    snapshot.reserve([half, half])
    assert snapshot.gpus[gpu_id].free_milli == 0
    with pytest.raises(ValueError, match="1500 of 1000 milli-GPU"):
        snapshot.reserve([Claim(gpu_id, milli=500)])
    snapshot.release([half])
    with pytest.raises(ValueError, match="MiB in use"):
        snapshot.reserve([Claim(gpu_id, milli=1, memory_mib=snapshot.gpus[gpu_id].memory_mib)])


def test_reserve_applies_nothing_when_one_claim_fails() -> None:
    node = make_node("n1", count=2)
    snapshot = fleet(node)
    a, b = (snapshot.gpus[g.id] for g in node.gpus)
    snapshot.reserve([Claim(b.id, milli=100, memory_mib=10)])
    before = usage(snapshot)
    with pytest.raises(ValueError):
        snapshot.reserve([whole(a), whole(b)])
    assert usage(snapshot) == before
    assert snapshot.free_whole_gpus("H100-80GB", "n1") == 1


def test_two_claims_on_one_gpu_in_one_call_are_checked_together() -> None:
    node = make_node("n1", count=1)
    snapshot = fleet(node)
    gpu = snapshot.gpus[node.gpus[0].id]
    with pytest.raises(ValueError):
        snapshot.reserve([whole(gpu), whole(gpu)])
    assert gpu.is_empty


def test_mig_claims() -> None:
    node = make_node("n1", "A100-80GB", count=1, mig=True)
    snapshot = fleet(node)
    gpu = snapshot.gpus[node.gpus[0].id]
    snapshot.reserve([mig_claim(gpu, "4g.40gb", 0), mig_claim(gpu, "3g.40gb", 4)])
    assert (gpu.mig_used_mask, gpu.mig_used_compute) == (0xFF, 7)
    assert gpu.mig_profile_counts == {"4g.40gb": 1, "3g.40gb": 1}
    snapshot.release([mig_claim(gpu, "4g.40gb", 0)])
    assert (gpu.mig_used_mask, gpu.mig_used_compute) == (0xF0, 3)
    assert gpu.mig_profile_counts == {"3g.40gb": 1}
    with pytest.raises(ValueError, match="overlaps"):
        snapshot.reserve([mig_claim(gpu, "1g.10gb", 5)])
    with pytest.raises(ValueError, match=r"holds no 4g\.40gb"):
        snapshot.release([mig_claim(gpu, "4g.40gb", 0)])


@pytest.mark.parametrize(
    ("claim", "message"),
    [
        (Claim(0, 0, 0, "1g.10gb", 7, 1, 1), "cannot start at slot 7"),
        (Claim(0, 0, 0, "3g.71gb", 0, 4, 3), "does not exist on A100-80GB"),
        (Claim(0, 0, 0, "3g.40gb", 0, 2, 3), "does not match"),
        (Claim(0, milli=100, memory_mib=10), "takes only MIG claims"),
    ],
)
def test_bad_mig_claims(claim: Claim, message: str) -> None:
    node = make_node("n1", "A100-80GB", count=1, mig=True)
    snapshot = fleet(node)
    gpu_id = node.gpus[0].id
    with pytest.raises(ValueError, match=message):
        snapshot.reserve([replace(claim, gpu_id=gpu_id)])


def test_mode_and_limits() -> None:
    plain = make_node("p", count=1)
    mig = make_node("m", "A100-80GB", count=1, mig=True)
    snapshot = fleet(plain, mig)
    with pytest.raises(ValueError, match="not in MIG mode"):
        snapshot.reserve([mig_claim(plain.gpus[0], "3g.40gb", 0)])
    me = mig_claim(mig.gpus[0], "1g.10gb+me", 0)
    snapshot.reserve([me])
    with pytest.raises(ValueError, match="the most it can"):
        snapshot.reserve([mig_claim(mig.gpus[0], "1g.10gb+me", 1)])
    with pytest.raises(ValueError, match="not in the fleet"):
        snapshot.reserve([Claim(10**9, milli=1)])
    with pytest.raises(ValueError, match="negative"):
        snapshot.reserve([Claim(plain.gpus[0].id, milli=-1)])


def test_cordon_and_health_take_gpus_out_of_the_indexes() -> None:
    node = make_node("n1", count=2)
    snapshot = fleet(node)
    snapshot.set_node_schedulable("n1", False)
    assert list(snapshot.iter_whole_candidates(["H100-80GB"], 1)) == []
    assert list(snapshot.iter_fraction_gpus(["H100-80GB"], 0)) == []
    snapshot.set_node_schedulable("n1", True)
    snapshot.set_gpu_health(node.gpus[0].id, False)
    assert snapshot.free_whole_gpus("H100-80GB", "n1") == 1
    assert [g.id for g in snapshot.iter_fraction_gpus(["H100-80GB"], 0)] == [node.gpus[1].id]
    # Claims on an unhealthy GPU still count (its allocations are being moved).
    snapshot.reserve([Claim(node.gpus[0].id, milli=10)])
    snapshot.set_gpu_health(node.gpus[0].id, True)
    assert snapshot.free_whole_gpus("H100-80GB", "n1") == 1


def test_copy_is_independent() -> None:
    node = make_node("n1", count=2)
    snapshot = fleet(node)
    twin = snapshot.copy()
    twin.reserve([whole(twin.gpus[node.gpus[0].id])])
    twin.set_node_schedulable("n1", False)
    assert snapshot.gpus[node.gpus[0].id].is_empty
    assert snapshot.nodes["n1"].schedulable
    assert snapshot.free_whole_gpus("H100-80GB", "n1") == 2
    assert_indexes_match_a_scan(twin)
    assert_indexes_match_a_scan(snapshot)


def test_structure() -> None:
    snapshot = fleet(
        make_node("a", count=8),
        make_node("b", count=4),
        make_node("m", "A100-40GB", count=8, mig=True),
    )
    structure = snapshot.structure
    assert structure.max_gpus_per_node == {"H100-80GB": 8}
    assert structure.mig_models == {"A100-40GB"}
    assert structure.models == {"H100-80GB", "A100-40GB"}
    snapshot.remove_node("a")
    assert snapshot.structure.max_gpus_per_node == {"H100-80GB": 4}


# -- randomized: indexes against a brute-force scan --------------------------------


def assert_indexes_match_a_scan(snapshot: FleetSnapshot) -> None:
    usable = [g for g in snapshot.gpus.values() if g.healthy and snapshot.nodes[g.node].schedulable]
    models = sorted({g.model for g in snapshot.gpus.values()})
    idle: dict[tuple[str, str], set[int]] = {}
    for g in usable:
        if not g.mig_enabled and g.is_empty:
            idle.setdefault((g.model, g.node), set()).add(g.id)
    walked = list(snapshot.iter_whole_candidates(models, 1))
    assert {(gpus[0].model, n.name): {g.id for g in gpus} for n, gpus in walked} == idle
    assert [len(gpus) for _, gpus in walked] == sorted(len(gpus) for _, gpus in walked)
    for model in models:
        fractions = sorted(
            (g.free_memory_mib, g.free_milli, g.id)
            for g in usable
            if g.model == model and not g.mig_enabled and g.free_milli > 0
        )
        listed = snapshot.iter_fraction_gpus([model], 0)
        assert [(g.free_memory_mib, g.free_milli, g.id) for g in listed] == fractions
        mig = sorted((g.mig_used_mask, g.id) for g in usable if g.model == model and g.mig_enabled)
        listed = snapshot.iter_mig_gpus([model], range(256))
        assert sorted((g.mig_used_mask, g.id) for g in listed) == mig


def random_claim(rng: random.Random, gpu: GpuView) -> Claim:
    if gpu.mig_enabled:
        p = rng.choice(CATALOGUE[gpu.model].mig_profiles)
        return mig_claim(gpu, p.name, rng.choice(p.valid_starts))
    if rng.random() < 0.3:
        return whole(gpu)
    return Claim(gpu.id, milli=rng.randrange(1, 600), memory_mib=rng.randrange(0, gpu.memory_mib))


@pytest.mark.parametrize("seed", range(5))
def test_random_operations_keep_indexes_and_counters_consistent(seed: int) -> None:
    rng = random.Random(seed)
    snapshot = fleet(
        make_node("h1"),
        make_node("h2", count=4),
        make_node("l1", "L4", count=4, links="none"),
        make_node("a1", "A100-80GB", count=4, mig=True),
        make_node("a2", "A100-40GB", count=2, mig=True),
    )
    held: list[list[Claim]] = []
    reserved = refused = 0
    for step in range(400):
        roll = rng.random()
        if roll < 0.55:
            gpus = rng.sample(list(snapshot.gpus.values()), rng.choice((1, 1, 2)))
            claims = [random_claim(rng, g) for g in gpus]
            before = usage(snapshot)
            try:
                snapshot.reserve(claims)
                held.append(claims)
                reserved += 1
            except ValueError:
                refused += 1
                assert usage(snapshot) == before
        elif roll < 0.85 and held:
            snapshot.release(held.pop(rng.randrange(len(held))))
        elif roll < 0.93:
            snapshot.set_gpu_health(rng.choice(list(snapshot.gpus)), rng.random() < 0.7)
        else:
            snapshot.set_node_schedulable(rng.choice(list(snapshot.nodes)), rng.random() < 0.7)
        if step % 10 == 0:
            assert_indexes_match_a_scan(snapshot)
    assert_indexes_match_a_scan(snapshot)
    assert reserved > 50 and refused > 10
    for claims in held:
        snapshot.release(claims)
    assert all(g.is_empty and g.mig_used_compute == 0 for g in snapshot.gpus.values())
    assert all(not g.mig_profile_counts for g in snapshot.gpus.values())
    assert_indexes_match_a_scan(snapshot)
