"""MIG geometry: where a GPU instance may go, where it should go, and how a GPU looks.

A GPU has 8 memory slices and 7 compute slices (../shared/gpus.md). An instance
takes a contiguous run of memory slices at one of its profile's valid starts;
instances never overlap, each profile has a per-GPU maximum, and the compute
slices of all instances add up to at most 7.

Per-mask answers are tabulated once per geometry (size, valid starts): there
are only 256 masks, and placement asks these questions thousands of times a
second.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import NamedTuple

from scheduler.domain.catalogue import (
    CATALOGUE,
    MIG_COMPUTE_SLICES,
    MIG_MEMORY_SLICES,
    MigProfile,
)

_ALL_MASKS = range(1 << MIG_MEMORY_SLICES)
_PROFILES: dict[tuple[str, str], MigProfile] = {
    (model.name, profile.name): profile
    for model in CATALOGUE.values()
    for profile in model.mig_profiles
}
# Distinct geometries, largest first: room for big instances matters most.
_GEOMETRIES: tuple[tuple[int, tuple[int, ...]], ...] = tuple(
    sorted(
        {(p.memory_slices, p.valid_starts) for p in _PROFILES.values()},
        key=lambda g: (-g[0], len(g[1])),
    )
)


class MigInstance(NamedTuple):
    """One GPU instance on a GPU: its profile name and the memory slices it holds."""

    profile: str
    start: int
    size: int


def profile_for(model: str, profile: str) -> MigProfile | None:
    """The profile called `profile` on catalogue model `model`, else None."""
    return _PROFILES.get((model, profile))


def models_with_profile(profile: str) -> tuple[str, ...]:
    """Catalogue models that offer a profile of this name, in catalogue order."""
    return tuple(m for (m, p) in _PROFILES if p == profile)


def _run(size: int, start: int) -> int:
    return ((1 << size) - 1) << start


@cache
def _free_starts_by_mask(size: int, starts: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(s for s in starts if not mask & _run(size, s)) for mask in _ALL_MASKS)


def room_score(used_mask: int) -> float:
    """How much room a GPU with these slices used leaves for future instances, 0..100.

    Each geometry counts the share of its starts still free, weighted by its
    size squared so that keeping a 4g or 7g possible outweighs any number of 1g.
    """
    return _ROOM[used_mask]


def _room(mask: int) -> float:
    total = weight_sum = 0.0
    for size, starts in _GEOMETRIES:
        weight = float(size * size)
        total += weight * len(_free_starts_by_mask(size, starts)[mask]) / len(starts)
        weight_sum += weight
    return 100.0 * total / weight_sum if weight_sum else 0.0


_ROOM: tuple[float, ...] = tuple(_room(mask) for mask in _ALL_MASKS)


@cache
def _best_start_by_mask(size: int, starts: tuple[int, ...]) -> tuple[int | None, ...]:
    # Most room left wins; on a tie the highest start, which keeps the low
    # slices (where the big profiles must start) together.
    return tuple(
        max(free, key=lambda s: (_ROOM[mask | _run(size, s)], s)) if free else None
        for mask, free in zip(_ALL_MASKS, _free_starts_by_mask(size, starts), strict=True)
    )


def _fits_counters(
    profile: MigProfile, used_compute: int, profile_counts: Mapping[str, int]
) -> bool:
    return (
        used_compute + profile.compute_slices <= MIG_COMPUTE_SLICES
        and profile_counts.get(profile.name, 0) < profile.max_count
    )


def free_starts(
    profile: MigProfile, used_mask: int, used_compute: int, profile_counts: Mapping[str, int]
) -> list[int]:
    """Every start where a new `profile` instance could be created on this GPU."""
    if not _fits_counters(profile, used_compute, profile_counts):
        return []
    return list(_free_starts_by_mask(profile.memory_slices, profile.valid_starts)[used_mask])


def best_start(
    profile: MigProfile, used_mask: int, used_compute: int, profile_counts: Mapping[str, int]
) -> int | None:
    """The free start that leaves the most room for later instances, else None."""
    if not _fits_counters(profile, used_compute, profile_counts):
        return None
    return _best_start_by_mask(profile.memory_slices, profile.valid_starts)[used_mask]


@cache
def _candidate_masks(size: int, starts: tuple[int, ...]) -> tuple[int, ...]:
    ranked = sorted(
        (-mask.bit_count(), -_ROOM[mask | _run(size, start)], mask)
        for mask, start in enumerate(_best_start_by_mask(size, starts))
        if start is not None
    )
    return tuple(mask for _, _, mask in ranked)


def candidate_masks(profile: MigProfile) -> tuple[int, ...]:
    """Used-slice masks that still have a free start for `profile`, best fit first.

    Best fit: fewest free slices first, then the most room left after placing.
    """
    return _candidate_masks(profile.memory_slices, profile.valid_starts)


def render_slot_map(instances: Iterable[MigInstance]) -> str:
    """The 8 memory slices as text: each instance's compute digit, '.' free, '!' overlap.

    A 3g instance at start 0 gives "3333....".
    """
    slots = ["."] * MIG_MEMORY_SLICES
    for instance in instances:
        if instance.start < 0 or instance.size < 1 or instance.start + instance.size > len(slots):
            raise ValueError(f"{instance.profile} at {instance.start} is off the slot map")
        digit = instance.profile.split("g", 1)[0]
        for slot in range(instance.start, instance.start + instance.size):
            slots[slot] = digit if slots[slot] == "." else "!"
    return "".join(slots)


def layout_errors(model: str, instances: Iterable[MigInstance]) -> list[str]:
    """What is wrong with this set of instances on one GPU of `model`; empty when valid."""
    errors: list[str] = []
    used_mask = used_compute = 0
    counts: dict[str, int] = {}
    for instance in instances:
        profile = profile_for(model, instance.profile)
        if profile is None:
            errors.append(f"profile {instance.profile} does not exist on {model}")
            continue
        if instance.size != profile.memory_slices:
            errors.append(
                f"{profile.name} takes {profile.memory_slices} memory slices, not {instance.size}"
            )
            continue
        if instance.start not in profile.valid_starts:
            errors.append(f"{profile.name} cannot start at slot {instance.start}")
            continue
        slots = profile.slot_mask(instance.start)
        if used_mask & slots:
            errors.append(f"{profile.name} at {instance.start} overlaps another instance")
        used_mask |= slots
        used_compute += profile.compute_slices
        counts[profile.name] = counts.get(profile.name, 0) + 1
        if counts[profile.name] == profile.max_count + 1:
            errors.append(f"more than {profile.max_count} {profile.name} on one GPU")
    if used_compute > MIG_COMPUTE_SLICES:
        errors.append(
            f"instances need {used_compute} compute slices, a GPU has {MIG_COMPUTE_SLICES}"
        )
    return errors
