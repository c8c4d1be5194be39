"""Fleet files (deploy/fleets/*.yaml): the nodes and GPUs of a simulated fleet.

nodes:
  - name: h100-sxm          # with count: 2 -> h100-sxm-0, h100-sxm-1
    count: 2
    labels: {zone: zone-a, rack: rack-1}
    gpus: {model: H100-80GB, count: 8, nvlink: true}
  - name: a100-40-mig
    gpus: {model: A100-40GB, count: 4, mig: true}
  - name: h200
    gpus: {model: H200, count: 8}
    models:                 # optional: what the simulated agent reports warm
      - {model: llama-3.1-70b, gpus: [0, 1], standby: true}   # loaded, not serving
      - {model: qwen2.5-72b, tier: host_ram}                   # or local_disk
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scheduler.domain.catalogue import CATALOGUE

_UUID_NAMESPACE = uuid.UUID("6f1c1d8e-3a52-4a7c-9a51-0f1d2c3b4a59")


@dataclass(frozen=True)
class SimulatedGpu:
    uuid: str
    index: int
    model: str
    memory_mib: int
    mig_enabled: bool
    nvlink_peers: tuple[int, ...]
    pci_bus_id: str


@dataclass(frozen=True)
class SimulatedResidency:
    """A model a simulated node holds warm: on GPUs (by index) or in a tier."""

    model: str
    tier: str  # gpu | host_ram | local_disk
    gpus: tuple[int, ...] = ()  # GPU tier only
    standby: bool = False
    size_bytes: int = 0  # 0: the LLM catalogue's figure


@dataclass(frozen=True)
class SimulatedNode:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    gpus: tuple[SimulatedGpu, ...] = ()
    models: tuple[SimulatedResidency, ...] = ()


def gpu_uuid(node: str, index: int) -> str:
    """A stable, realistic-looking UUID per (node, index)."""
    return f"GPU-{uuid.uuid5(_UUID_NAMESPACE, f'{node}/{index}')}"


def _gpus(node: str, spec: dict[str, Any]) -> tuple[SimulatedGpu, ...]:
    model_name = spec.get("model", "")
    model = CATALOGUE.get(model_name)
    if model is None:
        raise ValueError(
            f"node {node}: unknown GPU model {model_name!r} (known: {', '.join(CATALOGUE)})"
        )
    count = int(spec.get("count", 1))
    mig = bool(spec.get("mig", False))
    if mig and not model.mig_capable:
        raise ValueError(f"node {node}: {model.name} does not support MIG")
    nvlink = bool(spec.get("nvlink", model.nvlink_gbps > 0))
    return tuple(
        SimulatedGpu(
            uuid=gpu_uuid(node, i),
            index=i,
            model=model.name,
            memory_mib=int(spec.get("memory_mib", model.memory_mib)),
            mig_enabled=mig,
            nvlink_peers=tuple(j for j in range(count) if j != i) if nvlink else (),
            pci_bus_id=f"00000000:{0x18 + i * 0x10:02X}:00.0",
        )
        for i in range(count)
    )


def _residency(node: str, spec: dict[str, Any], gpu_count: int) -> SimulatedResidency:
    model = str(spec.get("model", ""))
    if not model:
        raise ValueError(f"node {node}: a models entry needs a model name")
    gpus = tuple(int(i) for i in spec.get("gpus", ()))
    tier = str(spec.get("tier", "gpu" if gpus else ""))
    if tier not in ("gpu", "host_ram", "local_disk"):
        raise ValueError(f"node {node}: {model} needs gpus: [...] or tier: host_ram|local_disk")
    if (tier == "gpu") != bool(gpus):
        raise ValueError(f"node {node}: {model}: gpus go with the gpu tier only")
    if any(not 0 <= i < gpu_count for i in gpus):
        raise ValueError(f"node {node}: {model} names a GPU index outside 0..{gpu_count - 1}")
    standby = bool(spec.get("standby", False))
    if standby and tier != "gpu":
        raise ValueError(f"node {node}: {model}: only GPU-resident models can be standby")
    return SimulatedResidency(model, tier, gpus, standby, int(spec.get("size_bytes", 0)))


def parse_fleet(document: dict[str, Any]) -> list[SimulatedNode]:
    nodes: list[SimulatedNode] = []
    for entry in document.get("nodes", []):
        base = entry["name"]
        copies = int(entry.get("count", 1))
        names = [base] if "count" not in entry else [f"{base}-{i}" for i in range(copies)]
        for name in names:
            labels = {str(k): str(v) for k, v in entry.get("labels", {}).items()}
            gpus = _gpus(name, entry["gpus"])
            models = tuple(_residency(name, m, len(gpus)) for m in entry.get("models", []))
            nodes.append(SimulatedNode(name=name, labels=labels, gpus=gpus, models=models))
    seen = [n.name for n in nodes]
    if len(seen) != len(set(seen)):
        raise ValueError("node names in a fleet file must be unique")
    return nodes


def load_fleet(path: Path) -> list[SimulatedNode]:
    return parse_fleet(yaml.safe_load(path.read_text()) or {})
