"""Node and pod lists in the column format of Alibaba's cluster-trace-gpu-v2023 ("openb").

Nodes: `sn,cpu_milli,memory_mib,gpu,model`. Pods: `name,cpu_milli,memory_mib,num_gpu,
gpu_milli[,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time]`; the
multi-GPU variants have only the first five columns. Timestamps are ignored, as in
the paper: pods arrive once and never leave.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scheduler.domain.fleet import FleetSnapshot, GpuView, NodeView
from scheduler.domain.requests import Demand, FractionDemand, PlacementRequest, WholeDemand

NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")


@dataclass(frozen=True)
class TraceNode:
    name: str
    cpu_milli: int
    memory_mib: int
    gpus: int
    model: str


@dataclass(frozen=True)
class TracePod:
    name: str
    cpu_milli: int
    memory_mib: int
    num_gpu: int
    gpu_milli: int  # per GPU; below 1000 only for a GPU-sharing pod (num_gpu == 1)
    gpu_spec: frozenset[str] = frozenset()  # allowed GPU models; empty: any

    @property
    def gpu_request(self) -> int:
        """Total milli-GPU asked for."""
        return self.num_gpu * self.gpu_milli

    @property
    def sharing(self) -> bool:
        return self.num_gpu == 1 and 0 < self.gpu_milli < 1000

    def request(self) -> PlacementRequest:
        """As the engine sees it: a fraction, whole GPUs on one node, or host-only (CPU)."""
        demand: Demand
        if self.sharing:
            demand = FractionDemand(milli=self.gpu_milli, memory_mib=0)
        else:
            demand = WholeDemand(self.num_gpu if self.gpu_milli else 0)
        return PlacementRequest(
            demand,
            gpu_models=self.gpu_spec,
            cpu_milli=self.cpu_milli,
            host_memory_mib=self.memory_mib,
        )


def _rows(path: Path, required: Sequence[str]) -> Iterable[dict[str, str]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}: missing columns {', '.join(missing)}")
        yield from reader


def read_nodes(path: Path) -> list[TraceNode]:
    return [
        TraceNode(
            name=row["sn"],
            cpu_milli=int(row["cpu_milli"]),
            memory_mib=int(row["memory_mib"]),
            gpus=int(row["gpu"]),
            model=row["model"] or "",
        )
        for row in _rows(path, NODE_COLUMNS)
    ]


def read_pods(path: Path) -> list[TracePod]:
    pods = []
    for row in _rows(path, POD_COLUMNS):
        spec = (row.get("gpu_spec") or "").strip()
        pods.append(
            TracePod(
                name=row["name"],
                cpu_milli=int(row["cpu_milli"]),
                memory_mib=int(row["memory_mib"]),
                num_gpu=int(row["num_gpu"]),
                gpu_milli=int(row["gpu_milli"]),
                gpu_spec=frozenset(spec.split("|")) if spec and spec != "nan" else frozenset(),
            )
        )
    return pods


def build_fleet(nodes: Iterable[TraceNode]) -> FleetSnapshot:
    """A snapshot of the trace's nodes. The trace's models (G2, T4, ...) are not catalogue
    names and it gives no GPU memory: GPUs get 0 MiB, and fractions ask for none."""
    snapshot = FleetSnapshot()
    gpu_id = 0
    for node in nodes:
        gpus = []
        for index in range(node.gpus):
            gpus.append(
                GpuView(
                    id=gpu_id,
                    uuid=f"{node.name}-gpu{index}",
                    node=node.name,
                    index=index,
                    model=node.model,
                    memory_mib=0,
                    mig_enabled=False,
                )
            )
            gpu_id += 1
        snapshot.upsert_node(
            NodeView(
                name=node.name, gpus=gpus, cpu_milli=node.cpu_milli, memory_mib=node.memory_mib
            )
        )
    return snapshot
