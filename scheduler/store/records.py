"""Plain read models the services hand to the API layer."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Self


class _FromMapping:
    @classmethod
    def from_mapping(cls, row: Any, **extra: Any) -> Self:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        values = {k: row[k] for k in names if k in row}
        values.update(extra)
        return cls(**values)


@dataclass(frozen=True)
class AllocationEvent(_FromMapping):
    seq: int
    state: str
    message: str
    at: datetime
    reason: str = ""
    deadline: datetime | None = None


@dataclass(frozen=True)
class AllocationRecord(_FromMapping):
    id: str
    tenant: str
    request_id: str
    kind: str
    gpu_count: int
    milli: int
    memory_mib: int
    mig_profile: str
    gpu_models: list[str]
    priority_class: str
    workload_class: str
    model: str
    labels: dict[str, str]
    state: str
    pending_reasons: list[dict[str, Any]]
    unschedulable: bool
    bindings: list[dict[str, Any]]
    message: str
    node: str
    created_at: datetime
    updated_at: datetime
    event_count: int
    on_failure: str = "requeue"
    placed_at: datetime | None = None
    checkpoint_uri: str = ""
    last_checkpoint_at: datetime | None = None
    resume_from: str = ""
    preemption_deadline: datetime | None = None
    preempted_for: str = ""
    preemption_count: int = 0
    nodes: list[str] = field(default_factory=list)
    layout: dict[str, int] | None = None
    model_spec: dict[str, Any] | None = None
    layout_choice: dict[str, Any] | None = None
    worker: dict[str, Any] | None = None
    rendezvous_addr: str = ""
    rendezvous_port: int | None = None
    workers: list[dict[str, Any]] = field(default_factory=list)
    worker_generation: int = 0
    events: tuple[AllocationEvent, ...] = ()


@dataclass(frozen=True)
class MigInstanceRecord:
    profile: str
    start: int
    size: int
    allocation_id: str


@dataclass(frozen=True)
class GpuRecord(_FromMapping):
    id: int
    uuid: str
    node: str
    index: int
    model: str
    memory_mib: int
    mig_enabled: bool
    health: str
    health_reasons: list[str]
    nvlink_peers: list[int]
    pci_bus_id: str
    used_milli: int
    used_memory_mib: int
    allocation_count: int = 0
    mig_instances: tuple[MigInstanceRecord, ...] = ()


@dataclass(frozen=True)
class NodeRecord(_FromMapping):
    id: int
    name: str
    hostname: str
    labels: dict[str, str]
    admin_state: str
    reachable: bool
    last_heartbeat_at: datetime | None
    registered_at: datetime
    unreachable_since: datetime | None = None
    agent_info: dict[str, Any] = field(default_factory=dict)
    allocation_count: int = 0
    gpus: tuple[GpuRecord, ...] = field(default_factory=tuple)

    @property
    def state(self) -> str:
        """ready | cordoned | draining | drained | unreachable."""
        if not self.reachable:
            return "unreachable"
        if self.admin_state == "draining":
            return "drained" if self.allocation_count == 0 else "draining"
        if self.admin_state == "cordoned":
            return "cordoned"
        return "ready"
