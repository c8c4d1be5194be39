"""The in-memory fleet snapshot that placement reads and the commit path updates.

Mutate it only through FleetSnapshot's methods: they keep the lookup indexes
that make placement on a 10,000-GPU fleet fast in step with the counters.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Claim:
    """What one allocation holds on one GPU. Whole GPU: milli=1000 and all memory."""

    gpu_id: int
    milli: int = 0
    memory_mib: int = 0
    mig_profile: str | None = None
    mig_start: int | None = None
    mig_size: int = 0
    mig_compute: int = 0


@dataclass
class GpuView:
    id: int
    uuid: str
    node: str
    index: int
    model: str  # catalogue name
    memory_mib: int
    mig_enabled: bool
    healthy: bool = True
    used_milli: int = 0
    used_memory_mib: int = 0
    mig_used_mask: int = 0  # bit i set: MIG memory slice i is occupied
    mig_used_compute: int = 0
    mig_profile_counts: dict[str, int] = field(default_factory=dict)
    nvlink_peers: tuple[int, ...] = ()

    @property
    def free_milli(self) -> int:
        return 1000 - self.used_milli

    @property
    def free_memory_mib(self) -> int:
        return self.memory_mib - self.used_memory_mib

    @property
    def is_empty(self) -> bool:
        return self.used_milli == 0 and self.used_memory_mib == 0 and self.mig_used_mask == 0


@dataclass
class NodeView:
    name: str
    schedulable: bool = True  # False when cordoned, draining or unreachable
    labels: dict[str, str] = field(default_factory=dict)
    gpus: list[GpuView] = field(default_factory=list)
