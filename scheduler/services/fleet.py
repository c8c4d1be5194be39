"""Use cases of the fleet: agents registering and heartbeating, admins
cordoning and draining, and the read side of nodes and GPUs."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine

from scheduler.domain.catalogue import resolve_model_name
from scheduler.domain.clock import Clock
from scheduler.domain.errors import InvalidArgument
from scheduler.services.allocator import Allocator
from scheduler.store import allocations as allocation_store
from scheduler.store import fleet as store
from scheduler.store import liveness
from scheduler.store.fleet import GpuSpecInput
from scheduler.store.records import GpuRecord, NodeRecord

MAX_NODE_NAME = 253
MAX_GPUS_PER_NODE = 72


class FleetService:
    def __init__(self, engine: Engine, allocator: Allocator, clock: Clock, replica_id: str) -> None:
        self._engine = engine
        self._allocator = allocator
        self._clock = clock
        self._replica_id = replica_id

    def register_node(
        self, name: str, hostname: str, labels: dict[str, str], gpus: Sequence[GpuSpecInput]
    ) -> NodeRecord:
        resolved = validate_registration(name, gpus)
        with self._engine.begin() as conn:
            store.register_node(conn, name, hostname, labels, resolved, self._clock.now())
            allocation_store.notify(conn, [f"fleet:{self._replica_id}:"])
        self.fleet_changed([name])
        return self.get_node(name)

    def set_admin_state(self, name: str, admin_state: str) -> NodeRecord:
        with self._engine.begin() as conn:
            store.set_admin_state(conn, name, admin_state)
            allocation_store.notify(conn, [f"fleet:{self._replica_id}:"])
            moving = (
                liveness.active_allocations_on_node(conn, name) if admin_state == "draining" else []
            )
        self._allocator.refresh_nodes([name])
        if moving:
            self._allocator.requeue([a["id"] for a in moving], f"node {name} is draining")
        self._allocator.place_pending_if_leader()
        return self.get_node(name)

    def interrupt(self, name: str, in_seconds: float) -> tuple[NodeRecord, int]:
        """A spot interruption notice: no new work, and everything on the node
        checkpoints within the notice, then moves elsewhere."""
        if in_seconds <= 0:
            raise InvalidArgument("an interruption notice needs in_seconds > 0")
        with self._engine.begin() as conn:
            store.set_admin_state(conn, name, "cordoned")
            allocation_store.notify(conn, [f"fleet:{self._replica_id}:"])
            running = liveness.active_allocations_on_node(conn, name)
        self._allocator.refresh_nodes([name])
        ids = [a["id"] for a in running if a["state"] in ("placed", "running")]
        asked = 0
        if ids:
            reason = f"node {name} is being reclaimed (spot interruption in {in_seconds:.0f}s)"
            asked = self._allocator.preempt(ids, "", in_seconds, reason)
        return self.get_node(name), asked

    def list_nodes(self) -> list[NodeRecord]:
        with self._engine.connect() as conn:
            return store.list_nodes(conn)

    def get_node(self, name: str) -> NodeRecord:
        with self._engine.connect() as conn:
            return store.get_node(conn, name)

    def list_gpus(self, node: str = "") -> list[GpuRecord]:
        with self._engine.connect() as conn:
            if node:
                store.get_node(conn, node)  # NOT_FOUND for an unknown node, not an empty list
            return store.list_gpus(conn, node or None)

    def fleet_changed(self, nodes: Sequence[str]) -> None:
        """These nodes or their GPUs changed: refresh placement's view of them
        and give the queue a chance."""
        self._allocator.refresh_nodes(nodes)
        self._allocator.request_pending_pass()


def validate_registration(name: str, gpus: Sequence[GpuSpecInput]) -> list[GpuSpecInput]:
    """Check what an agent reports; map NVML names to catalogue models."""
    if not name or len(name) > MAX_NODE_NAME:
        raise InvalidArgument(f"node name must be 1..{MAX_NODE_NAME} characters")
    if len(gpus) > MAX_GPUS_PER_NODE:
        raise InvalidArgument(
            f"{len(gpus)} GPUs reported; a node holds at most {MAX_GPUS_PER_NODE}"
        )
    uuids = [g.uuid for g in gpus]
    indexes = [g.index for g in gpus]
    if len(set(uuids)) != len(uuids) or len(set(indexes)) != len(indexes):
        raise InvalidArgument(f"node {name}: GPU UUIDs and indexes must be unique")
    resolved = []
    for gpu in gpus:
        if not gpu.uuid:
            raise InvalidArgument(f"node {name}: GPU {gpu.index} has no UUID")
        model = resolve_model_name(gpu.model)
        if model is None:
            raise InvalidArgument(
                f"node {name}: GPU {gpu.index} model {gpu.model!r} is not in the catalogue"
            )
        if gpu.mig_enabled and not model.mig_capable:
            raise InvalidArgument(f"node {name}: {model.name} does not support MIG")
        memory = gpu.memory_mib or model.memory_mib
        resolved.append(
            GpuSpecInput(
                uuid=gpu.uuid,
                index=gpu.index,
                model=model.name,
                memory_mib=memory,
                mig_enabled=gpu.mig_enabled,
                nvlink_peers=gpu.nvlink_peers,
                pci_bus_id=gpu.pci_bus_id,
            )
        )
    return resolved
