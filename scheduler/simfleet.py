"""A simulated fleet inside `gpupool up`: registers the nodes of a fleet file
over gRPC, as agents would, and keeps them heartbeating.

The agent issue replaces this with one simulated agent process per node.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import grpc
from gpupool.v1 import agents_pb2, agents_pb2_grpc, types_pb2

from scheduler.fleetfile import SimulatedNode

HEARTBEAT_SECONDS = 5.0


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


class SimulatedFleet:
    def __init__(self, address: str, nodes: list[SimulatedNode]) -> None:
        self._channel = grpc.insecure_channel(address)
        self._agents = agents_pb2_grpc.AgentsStub(self._channel)
        self._nodes = nodes
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat, name="sim-fleet", daemon=True)

    def register(self, on_node: Callable[[SimulatedNode], None] = lambda n: None) -> None:
        for node in self._nodes:
            self._agents.RegisterNode(register_request(node), timeout=30)
            on_node(node)
        self._thread.start()

    def _heartbeat(self) -> None:
        while not self._stopped.wait(HEARTBEAT_SECONDS):
            for node in self._nodes:
                try:
                    self._agents.Heartbeat(agents_pb2.HeartbeatRequest(node=node.name), timeout=5)
                except grpc.RpcError:
                    break  # the scheduler is going away; try again next round

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._channel.close()
