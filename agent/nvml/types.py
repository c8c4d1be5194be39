"""What the agent sees of its GPUs, whichever NVML backend (real or simulated) it runs on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# Clock event reason bits (nvmlClocksEventReason*, ../shared/gpus.md).
CLOCK_EVENT_SW_POWER_CAP = 0x4
CLOCK_EVENT_HW_SLOWDOWN = 0x8
CLOCK_EVENT_SW_THERMAL_SLOWDOWN = 0x20
CLOCK_EVENT_HW_THERMAL_SLOWDOWN = 0x40
CLOCK_EVENT_HW_POWER_BRAKE_SLOWDOWN = 0x80


@dataclass(frozen=True)
class MigInstanceInfo:
    """One MIG device on a GPU.

    `start`/`size` are its memory-slice placement; `start` is -1 and `size` 0 when
    NVML would not tell (querying GPU instances can need extra privileges).
    """

    profile: str
    start: int
    size: int
    uuid: str  # "MIG-..."


@dataclass(frozen=True)
class GpuDevice:
    uuid: str
    index: int
    name: str  # NVML marketing name, e.g. "NVIDIA H100 80GB HBM3"
    model: str  # catalogue name (resolve_model_name), "" when the catalogue does not know it
    memory_mib: int
    mig_enabled: bool
    mig_instances: tuple[MigInstanceInfo, ...]
    nvlink_peers: tuple[int, ...]  # indexes of the GPUs on this host reachable over NVLink
    pci_bus_id: str


@dataclass(frozen=True)
class GpuSample:
    """One health sample of one GPU; a None figure is not supported on this GPU (or mode)."""

    uuid: str
    lost: bool = False
    temperature_c: float | None = None
    slowdown_temp_c: float | None = None
    shutdown_temp_c: float | None = None
    ecc_uncorrected_volatile: int | None = None
    retired_pages_pending: bool | None = None
    remapped_rows_pending: bool | None = None
    remapped_rows_failure: bool | None = None
    clock_event_reasons: int | None = None  # bitmask of CLOCK_EVENT_* bits
    power_mw: int | None = None
    utilization_pct: int | None = None
    memory_used_mib: int | None = None


@dataclass(frozen=True)
class XidEvent:
    uuid: str
    xid: int
    at: float  # time.time() when the agent saw it


class NvmlBackend(Protocol):
    """The agent's only door to GPU hardware."""

    simulated: bool

    def devices(self) -> list[GpuDevice]:
        """Every GPU on this host, in index order; a lost GPU keeps its last known info."""
        ...

    def sample(self, uuid: str) -> GpuSample:
        """A health sample of one GPU; KeyError for a UUID this host does not have."""
        ...

    def drain_xid_events(self) -> list[XidEvent]:
        """Xid events seen since the last call, oldest first."""
        ...

    def create_mig_instance(
        self, gpu_index: int, profile: str, start: int | None = None
    ) -> MigInstanceInfo:
        """Create a GPU instance of `profile` at memory slice `start` with one
        compute instance spanning it; ValueError when it cannot be made."""
        ...

    def destroy_mig_instance(self, gpu_index: int, mig_uuid: str) -> None:
        """Destroy the MIG device (its compute and GPU instance); ValueError if unknown."""
        ...

    def close(self) -> None: ...
