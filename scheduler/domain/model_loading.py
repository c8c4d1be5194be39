"""Where a model's weights could come from, and how long loading them takes.

A cold start is dominated by moving the weights onto the GPUs: bytes ÷ the
bandwidth of the tier they come from. Figures are practical sustained rates,
not link maxima:

- host RAM (page cache) → GPU over PCIe: x16 Gen4 is 32 GB/s per direction
  on paper, ~25 GB/s in practice; Gen5 64 GB/s on paper, ~50 GB/s in
  practice. The generation per GPU model is from NVIDIA's datasheets
  (A100, L4 and L40S: PCIe Gen4; H100, H100 NVL, H200, B200: PCIe Gen5).
- local NVMe → GPU: ~5 GB/s (one Gen4 NVMe drive reads ~7 GB/s sequentially;
  safetensors loading rarely sustains it).
- remote (object store or a shared file system): ~1 GB/s per node, the figure
  to change first for a given site.

A model loaded on the GPU and idle (warm standby) costs nothing to start.
Serving weights cannot be shared with a new allocation, so a GPU that serves
the model counts as host-RAM warm: the weights sit in that node's page cache.
"""

from __future__ import annotations

from dataclasses import dataclass

GPU = "gpu"
HOST_RAM = "host_ram"
LOCAL_DISK = "local_disk"
REMOTE = "remote"
RESIDENCY_TIERS = (GPU, HOST_RAM, LOCAL_DISK)  # what an agent can report
_GB = 1e9

# PCIe generation of each GPU catalogue model's host interface (NVIDIA datasheets).
PCIE_GENERATION: dict[str, int] = {
    "A100-40GB": 4,
    "A100-80GB": 4,
    "H100-80GB": 5,
    "H100-NVL": 5,
    "H200": 5,
    "B200": 5,
    "L40S": 4,
    "L4": 4,
}


@dataclass(frozen=True)
class LoadBandwidths:
    """Sustained bytes-per-second figures (GB/s, 1e9) of each source tier."""

    pcie4_gbps: float = 25.0
    pcie5_gbps: float = 50.0
    local_disk_gbps: float = 5.0
    remote_gbps: float = 1.0

    def host_ram_gbps(self, gpu_model: str) -> float:
        """Unknown GPU models get the slower Gen4 figure."""
        return self.pcie5_gbps if PCIE_GENERATION.get(gpu_model, 4) >= 5 else self.pcie4_gbps

    def gbps(self, tier: str, gpu_model: str) -> float:
        if tier == HOST_RAM:
            return self.host_ram_gbps(gpu_model)
        if tier == LOCAL_DISK:
            return self.local_disk_gbps
        if tier == REMOTE:
            return self.remote_gbps
        raise ValueError(f"tier {tier!r} has no load bandwidth (GPU-resident loads nothing)")

    def seconds(self, size_bytes: int, tier: str, gpu_model: str = "") -> float:
        """Seconds to load `size_bytes` of weights from `tier` (0 for a GPU-resident standby)."""
        if tier == GPU:
            return 0.0
        return size_bytes / (self.gbps(tier, gpu_model) * _GB)


DEFAULT_BANDWIDTHS = LoadBandwidths()
