"""The GPU catalogue: datasheet figures and real MIG geometry per GPU model.

Figures come from ../shared/gpus.md (NVIDIA datasheets and the MIG user guide).
Memory is the nominal capacity in MiB (GB x 1024); agents report the exact
figure NVML gives, which is what a GPU row stores.
"""

from __future__ import annotations

from dataclasses import dataclass

MIG_MEMORY_SLICES = 8
MIG_COMPUTE_SLICES = 7


@dataclass(frozen=True)
class MigProfile:
    """One GPU-instance profile on one GPU model, e.g. 3g.40gb on an A100-80GB."""

    name: str
    compute_slices: int
    memory_slices: int
    max_count: int
    valid_starts: tuple[int, ...]
    memory_mib: int

    def slot_mask(self, start: int) -> int:
        """Bitmask of the memory slices an instance at `start` occupies."""
        return ((1 << self.memory_slices) - 1) << start


@dataclass(frozen=True)
class GpuModel:
    name: str
    generation: str
    memory_mib: int
    memory_bandwidth_gbps: int
    bf16_tflops: int
    nvlink_gbps: int
    # Relative decode throughput, A100-80GB = 1.0 (decode is bandwidth bound).
    throughput_weight: float
    # Names NVML reports for this model (nvmlDeviceGetName), matched case-insensitively.
    nvml_names: tuple[str, ...]
    mig_profiles: tuple[MigProfile, ...] = ()

    @property
    def mig_capable(self) -> bool:
        return bool(self.mig_profiles)

    def mig_profile(self, name: str) -> MigProfile | None:
        for profile in self.mig_profiles:
            if profile.name == name:
                return profile
        return None


# (suffix template, compute slices, memory slices, max count, valid starts); the
# placements are the same on A100, H100, H200 and B200 (MIG user guide).
_MIG_SHAPES: tuple[tuple[str, int, int, int, tuple[int, ...]], ...] = (
    ("1g.{one}gb", 1, 1, 7, (0, 1, 2, 3, 4, 5, 6)),
    ("1g.{one}gb+me", 1, 1, 1, (0, 1, 2, 3, 4, 5, 6)),
    ("1g.{two}gb", 1, 2, 4, (0, 2, 4, 6)),
    ("2g.{two}gb", 2, 2, 3, (0, 2, 4)),
    ("3g.{four}gb", 3, 4, 2, (0, 4)),
    ("4g.{four}gb", 4, 4, 1, (0,)),
    ("7g.{eight}gb", 7, 8, 1, (0,)),
)


def _mig_profiles(
    memory_mib: int, one: int, two: int, four: int, eight: int
) -> tuple[MigProfile, ...]:
    sizes = {"one": one, "two": two, "four": four, "eight": eight}
    return tuple(
        MigProfile(
            name=template.format(**sizes),
            compute_slices=compute,
            memory_slices=memory,
            max_count=max_count,
            valid_starts=starts,
            memory_mib=memory_mib * memory // MIG_MEMORY_SLICES,
        )
        for template, compute, memory, max_count, starts in _MIG_SHAPES
    )


def _gib(gb: int) -> int:
    return gb * 1024


CATALOGUE: dict[str, GpuModel] = {
    model.name: model
    for model in (
        GpuModel(
            "A100-40GB",
            "ampere",
            _gib(40),
            1555,
            312,
            600,
            0.7,
            ("NVIDIA A100-SXM4-40GB", "NVIDIA A100-PCIE-40GB", "A100-SXM4-40GB"),
            _mig_profiles(_gib(40), 5, 10, 20, 40),
        ),
        GpuModel(
            "A100-80GB",
            "ampere",
            _gib(80),
            2039,
            312,
            600,
            1.0,
            ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe", "A100-SXM4-80GB"),
            _mig_profiles(_gib(80), 10, 20, 40, 80),
        ),
        GpuModel(
            "H100-80GB",
            "hopper",
            _gib(80),
            3350,
            989,
            900,
            1.6,
            ("NVIDIA H100 80GB HBM3", "NVIDIA H100-SXM5-80GB", "NVIDIA H100"),
            _mig_profiles(_gib(80), 10, 20, 40, 80),
        ),
        GpuModel(
            "H100-NVL",
            "hopper",
            _gib(94),
            3900,
            835,
            600,
            1.9,
            ("NVIDIA H100 NVL",),
            _mig_profiles(_gib(94), 12, 24, 47, 94),
        ),
        GpuModel(
            "H200",
            "hopper",
            _gib(141),
            4800,
            989,
            900,
            2.35,
            ("NVIDIA H200", "NVIDIA H200 NVL"),
            _mig_profiles(_gib(141), 18, 35, 71, 141),
        ),
        GpuModel(
            "B200",
            "blackwell",
            _gib(180),
            8000,
            2250,
            1800,
            2.5,
            ("NVIDIA B200",),
            _mig_profiles(_gib(180), 23, 45, 90, 180),
        ),
        GpuModel("L40S", "ada", _gib(48), 864, 362, 0, 0.42, ("NVIDIA L40S",)),
        GpuModel("L4", "ada", _gib(24), 300, 121, 0, 0.15, ("NVIDIA L4",)),
    )
}


def resolve_model_name(name: str) -> GpuModel | None:
    """The catalogue entry for a catalogue name or an NVML device name, else None."""
    if name in CATALOGUE:
        return CATALOGUE[name]
    wanted = name.strip().lower()
    for model in CATALOGUE.values():
        if wanted == model.name.lower() or wanted in (n.lower() for n in model.nvml_names):
            return model
    return None


def mig_profile_names() -> set[str]:
    """Every MIG profile name some catalogue model knows."""
    return {p.name for m in CATALOGUE.values() for p in m.mig_profiles}
