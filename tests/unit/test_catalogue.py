"""The catalogue's MIG profiles match NVIDIA's tables (../shared/gpus.md)."""

from __future__ import annotations

import pytest

from scheduler.domain.catalogue import CATALOGUE, mig_profile_names, resolve_model_name

# (slices name, compute, memory slices, max per GPU, valid starts) from gpus.md.
GEOMETRY = {
    "1g": (1, 1, 7, (0, 1, 2, 3, 4, 5, 6)),
    "1g+me": (1, 1, 1, (0, 1, 2, 3, 4, 5, 6)),
    "1g-double": (1, 2, 4, (0, 2, 4, 6)),
    "2g": (2, 2, 3, (0, 2, 4)),
    "3g": (3, 4, 2, (0, 4)),
    "4g": (4, 4, 1, (0,)),
    "7g": (7, 8, 1, (0,)),
}
NAMES = {
    "A100-40GB": ("1g.5gb", "1g.5gb+me", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"),
    "A100-80GB": ("1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
    "H100-80GB": ("1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
    "H100-NVL": ("1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.47gb", "4g.47gb", "7g.94gb"),
    "H200": ("1g.18gb", "1g.18gb+me", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"),
    "B200": ("1g.23gb", "1g.23gb+me", "1g.45gb", "2g.45gb", "3g.90gb", "4g.90gb", "7g.180gb"),
}


@pytest.mark.parametrize("model", sorted(NAMES))
def test_profile_names_per_model(model: str) -> None:
    assert tuple(p.name for p in CATALOGUE[model].mig_profiles) == NAMES[model]


@pytest.mark.parametrize("model", sorted(NAMES))
def test_profile_geometry_is_the_same_on_every_mig_model(model: str) -> None:
    for profile, shape in zip(CATALOGUE[model].mig_profiles, GEOMETRY.values(), strict=True):
        assert (
            profile.compute_slices,
            profile.memory_slices,
            profile.max_count,
            profile.valid_starts,
        ) == shape


def test_slot_7_is_never_a_start() -> None:
    for model in CATALOGUE.values():
        for profile in model.mig_profiles:
            assert 7 not in profile.valid_starts
            assert all(s + profile.memory_slices <= 8 for s in profile.valid_starts)


def test_profile_memory_is_its_share_of_the_gpu() -> None:
    a100 = CATALOGUE["A100-80GB"]
    assert a100.mig_profile("3g.40gb") is not None
    assert a100.mig_profile("3g.40gb").memory_mib == a100.memory_mib // 2  # type: ignore[union-attr]
    assert a100.mig_profile("7g.80gb").memory_mib == a100.memory_mib  # type: ignore[union-attr]


def test_specific_profiles() -> None:
    assert CATALOGUE["A100-40GB"].mig_profile("3g.20gb") is not None
    assert CATALOGUE["H200"].mig_profile("3g.71gb") is not None
    assert CATALOGUE["H200"].mig_profile("3g.40gb") is None
    assert "3g.71gb" in mig_profile_names()


@pytest.mark.parametrize("model", ["L4", "L40S"])
def test_ada_cards_have_no_mig(model: str) -> None:
    assert not CATALOGUE[model].mig_capable
    assert CATALOGUE[model].mig_profiles == ()


def test_slot_mask() -> None:
    three_g = CATALOGUE["A100-80GB"].mig_profile("3g.40gb")
    assert three_g is not None
    assert three_g.slot_mask(4) == 0b1111_0000
    assert three_g.slot_mask(0) == 0b0000_1111


def test_resolve_model_name_accepts_nvml_names() -> None:
    assert resolve_model_name("NVIDIA H100 80GB HBM3") is CATALOGUE["H100-80GB"]
    assert resolve_model_name("nvidia a100-sxm4-40gb") is CATALOGUE["A100-40GB"]
    assert resolve_model_name("L4") is CATALOGUE["L4"]
    assert resolve_model_name("GeForce RTX 4090") is None
