"""RegisterNode requests for the nodes of a fleet file, for tests and
benchmarks that stand in for agents."""

from __future__ import annotations

from gpupool.v1 import agents_pb2, types_pb2
from scheduler.fleetfile import SimulatedNode


def register_request(node: SimulatedNode) -> agents_pb2.RegisterNodeRequest:
    return agents_pb2.RegisterNodeRequest(
        name=node.name,
        hostname=node.name,
        labels=node.labels,
        gpus=[
            types_pb2.GpuSpec(
                uuid=g.uuid,
                index=g.index,
                model=g.model,
                memory_mib=g.memory_mib,
                mig_enabled=g.mig_enabled,
                nvlink_peers=g.nvlink_peers,
                pci_bus_id=g.pci_bus_id,
            )
            for g in node.gpus
        ],
    )
