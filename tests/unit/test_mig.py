"""MIG geometry facts from ../shared/gpus.md, and slot choice and rendering."""

from __future__ import annotations

import pytest

from scheduler.domain.catalogue import CATALOGUE, MigProfile
from scheduler.domain.mig import (
    MigInstance,
    best_start,
    candidate_masks,
    free_starts,
    layout_errors,
    models_with_profile,
    profile_for,
    render_slot_map,
    room_score,
)

MODEL = "A100-80GB"


def profile(name: str) -> MigProfile:
    found = profile_for(MODEL, name)
    assert found is not None
    return found


def used(*instances: tuple[str, int]) -> tuple[int, int, dict[str, int]]:
    """(mask, compute, counts) after creating these (profile, start) instances."""
    mask = compute = 0
    counts: dict[str, int] = {}
    for name, start in instances:
        p = profile(name)
        assert not mask & p.slot_mask(start)
        mask |= p.slot_mask(start)
        compute += p.compute_slices
        counts[name] = counts.get(name, 0) + 1
    return mask, compute, counts


def test_4g_and_3g_fit_together() -> None:
    assert free_starts(profile("3g.40gb"), *used(("4g.40gb", 0))) == [4]
    assert layout_errors(MODEL, [MigInstance("4g.40gb", 0, 4), MigInstance("3g.40gb", 4, 4)]) == []


def test_two_4g_do_not_fit() -> None:
    assert free_starts(profile("4g.40gb"), *used(("4g.40gb", 0))) == []
    # A 4g can only start at 0, so the other half never takes one.
    assert free_starts(profile("4g.40gb"), *used(("3g.40gb", 0))) == []
    errors = layout_errors(MODEL, [MigInstance("4g.40gb", 0, 4), MigInstance("4g.40gb", 4, 4)])
    assert errors == ["4g.40gb cannot start at slot 4"]


def test_seven_1g_fit_and_an_eighth_does_not() -> None:
    seven = [("1g.10gb", s) for s in range(7)]
    assert free_starts(profile("1g.10gb"), *used(*seven[:6])) == [6]
    assert free_starts(profile("1g.10gb"), *used(*seven)) == []
    assert layout_errors(MODEL, [MigInstance("1g.10gb", s, 1) for s in range(7)]) == []


def test_slot_7_is_never_a_start() -> None:
    # Only slot 7 free: nothing can start there.
    mask = 0b0111_1111
    for p in CATALOGUE[MODEL].mig_profiles:
        assert free_starts(p, mask, 0, {}) == []
    assert layout_errors(MODEL, [MigInstance("1g.10gb", 7, 1)]) == [
        "1g.10gb cannot start at slot 7"
    ]


def test_1g_with_media_extensions_at_most_once() -> None:
    me = profile("1g.10gb+me")
    assert free_starts(me, *used(("1g.10gb+me", 0))) == []
    assert free_starts(profile("1g.10gb"), *used(("1g.10gb+me", 0))) == [1, 2, 3, 4, 5, 6]
    errors = layout_errors(
        MODEL, [MigInstance("1g.10gb+me", 0, 1), MigInstance("1g.10gb+me", 1, 1)]
    )
    assert errors == ["more than 1 1g.10gb+me on one GPU"]


def test_overlap_is_rejected() -> None:
    assert free_starts(profile("2g.20gb"), *used(("3g.40gb", 0))) == [4]
    errors = layout_errors(MODEL, [MigInstance("3g.40gb", 0, 4), MigInstance("2g.20gb", 2, 2)])
    assert errors == ["2g.20gb at 2 overlaps another instance"]


def test_compute_slices_run_out() -> None:
    # 4 x 1g.20gb fill all 8 memory slices with 4 compute; 4g + 2g + 1g use all 7 compute.
    assert layout_errors(MODEL, [MigInstance("1g.20gb", s, 2) for s in (0, 2, 4, 6)]) == []
    full = used(("4g.40gb", 0), ("2g.20gb", 4), ("1g.10gb", 6))
    assert full[1] == 7
    assert free_starts(profile("1g.10gb"), *full) == []


def test_layout_errors_name_bad_profiles_and_sizes() -> None:
    assert layout_errors("H200", [MigInstance("3g.40gb", 0, 4)]) == [
        "profile 3g.40gb does not exist on H200"
    ]
    assert layout_errors(MODEL, [MigInstance("3g.40gb", 0, 3)]) == [
        "3g.40gb takes 4 memory slices, not 3"
    ]


@pytest.mark.parametrize(
    ("name", "start"),
    [
        ("7g.80gb", 0),
        ("4g.40gb", 0),
        ("3g.40gb", 4),
        ("2g.20gb", 4),
        ("1g.20gb", 6),
        ("1g.10gb", 6),
    ],
)
def test_best_start_on_an_empty_gpu_keeps_room_for_big_profiles(name: str, start: int) -> None:
    assert best_start(profile(name), 0, 0, {}) == start


def test_best_start_fills_the_other_half() -> None:
    assert best_start(profile("3g.40gb"), *used(("3g.40gb", 4))) == 0
    assert best_start(profile("3g.40gb"), *used(("3g.40gb", 4), ("3g.40gb", 0))) is None


def test_candidate_masks_are_exactly_the_fitting_masks_fewest_free_first() -> None:
    for p in CATALOGUE[MODEL].mig_profiles:
        masks = candidate_masks(p)
        assert set(masks) == {m for m in range(256) if free_starts(p, m, 0, {})}
        counts = [m.bit_count() for m in masks]
        assert counts == sorted(counts, reverse=True)


def test_room_score_bounds() -> None:
    assert room_score(0) == 100.0
    assert room_score(0xFF) == 0.0
    # Using the top half leaves a 4g possible; the bottom half does not.
    assert room_score(0b1111_0000) > room_score(0b0000_1111)


def test_render_slot_map() -> None:
    assert render_slot_map([MigInstance("3g.40gb", 0, 4)]) == "3333...."
    assert render_slot_map([]) == "........"
    layout = [
        MigInstance("4g.40gb", 0, 4),
        MigInstance("2g.20gb", 4, 2),
        MigInstance("1g.10gb", 6, 1),
    ]
    assert render_slot_map(layout) == "4444221."
    assert (
        render_slot_map([MigInstance("3g.40gb", 0, 4), MigInstance("2g.20gb", 2, 2)]) == "33!!...."
    )
    with pytest.raises(ValueError):
        render_slot_map([MigInstance("1g.10gb", 8, 1)])


def test_models_with_profile() -> None:
    assert models_with_profile("3g.40gb") == ("A100-80GB", "H100-80GB")
    assert models_with_profile("3g.20gb") == ("A100-40GB",)
    assert models_with_profile("9g.1tb") == ()
