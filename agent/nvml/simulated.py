"""A simulated NVML backend: the GPUs of one fleet-file node, with faults injected on demand.

Figures mirror what NVML reports on these parts: retired pages are NOT_SUPPORTED
(None) on Ampere and later, where row remapping replaced page retirement, and
remapped rows and utilization are NOT_SUPPORTED while MIG is on. An injected
fault always shows, even where real hardware could not report it.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path

from agent.nvml.types import (
    CLOCK_EVENT_HW_SLOWDOWN,
    GpuDevice,
    GpuSample,
    MigInstanceInfo,
    XidEvent,
)
from scheduler.domain.catalogue import CATALOGUE
from scheduler.domain.faults import FAULT_KINDS as FAULT_KINDS  # re-exported by agent.nvml
from scheduler.domain.faults import parse_clear, parse_fault
from scheduler.domain.mig import MigInstance, layout_errors, profile_for
from scheduler.fleetfile import SimulatedGpu, SimulatedNode, load_fleet

# Typical datacenter-GPU figures; real ones are read per device.
_IDLE_TEMPERATURE_C = 34.0
_SLOWDOWN_C = 90.0
_SHUTDOWN_C = 95.0
_IDLE_POWER_MW = 60_000

_MIG_UUID_NAMESPACE = uuidlib.UUID("0b5c7f5e-2f4d-4d8e-8a0e-7d1e3c9b6a21")


@dataclass
class _SimGpu:
    spec: SimulatedGpu
    # Active faults by kind; flags carry no value. Xids are events, queued separately.
    faults: dict[str, float] = field(default_factory=dict)
    mig: list[MigInstanceInfo] = field(default_factory=list)


class SimulatedNvml:
    """NvmlBackend over one node of a fleet file."""

    simulated = True

    def __init__(self, node: SimulatedNode) -> None:
        self.node = node
        self._gpus = [_SimGpu(spec) for spec in node.gpus]
        self._by_uuid = {gpu.spec.uuid: gpu for gpu in self._gpus}
        self._xids: list[XidEvent] = []
        self._mig_serial = itertools.count()
        # inject()/clear() may come from another thread than the agent's sampling loop.
        self._lock = threading.Lock()

    @classmethod
    def from_fleet_file(cls, path: Path, node_name: str) -> SimulatedNvml:
        nodes = load_fleet(path)
        for node in nodes:
            if node.name == node_name:
                return cls(node)
        known = ", ".join(node.name for node in nodes)
        raise ValueError(f"no node {node_name!r} in {path} (nodes: {known})")

    def devices(self) -> list[GpuDevice]:
        with self._lock:
            return [self._device(gpu) for gpu in self._gpus]

    def sample(self, uuid: str) -> GpuSample:
        with self._lock:
            gpu = self._by_uuid.get(uuid)
            if gpu is None:
                raise KeyError(f"no GPU {uuid} on node {self.node.name}")
            return _sample(gpu)

    def drain_xid_events(self) -> list[XidEvent]:
        with self._lock:
            events, self._xids = self._xids, []
        return events

    def close(self) -> None:
        """Nothing to release; here so the simulated backend is a drop-in NvmlBackend."""

    def inject(self, gpu_index: int, fault: str) -> None:
        """Start a fault: "xid=79", "temperature=95", "ecc=2", "lost", "slowdown",
        "remap_failure", "remap_pending" or "retired_pending"."""
        parsed = parse_fault(fault)
        kind, value = parsed.kind, parsed.value
        with self._lock:
            gpu = self._gpu(gpu_index)
            if kind == "xid":
                self._xids.append(XidEvent(uuid=gpu.spec.uuid, xid=int(value), at=time.time()))
            else:
                gpu.faults[kind] = value

    def clear(self, gpu_index: int, fault: str = "") -> None:
        """End one kind of fault ("xid" drops undrained Xids), or all of them with ""."""
        kind = parse_clear(fault)
        with self._lock:
            gpu = self._gpu(gpu_index)
            if kind in ("", "xid"):
                self._xids = [e for e in self._xids if e.uuid != gpu.spec.uuid]
            if kind == "":
                gpu.faults.clear()
            else:
                gpu.faults.pop(kind, None)

    def create_mig_instance(
        self, gpu_index: int, profile: str, start: int | None = None
    ) -> MigInstanceInfo:
        """A new MIG device at `start` (first valid free start when None); ValueError
        when the GPU is not in MIG mode or the instance does not fit."""
        with self._lock:
            gpu = self._gpu(gpu_index)
            model = gpu.spec.model
            if not gpu.spec.mig_enabled:
                raise ValueError(f"GPU {gpu_index} is not in MIG mode")
            shape = profile_for(model, profile)
            if shape is None:
                raise ValueError(f"profile {profile} does not exist on {model}")
            existing = [MigInstance(m.profile, m.start, m.size) for m in gpu.mig]
            starts = shape.valid_starts if start is None else (start,)
            errors: list[str] = []
            for candidate in starts:
                wanted = MigInstance(profile, candidate, shape.memory_slices)
                errors = layout_errors(model, [*existing, wanted])
                if not errors:
                    mig_uuid = uuidlib.uuid5(
                        _MIG_UUID_NAMESPACE, f"{gpu.spec.uuid}/{next(self._mig_serial)}"
                    )
                    info = MigInstanceInfo(
                        profile, candidate, shape.memory_slices, f"MIG-{mig_uuid}"
                    )
                    gpu.mig.append(info)
                    return info
            raise ValueError(f"{profile} does not fit on GPU {gpu_index}: {'; '.join(errors)}")

    def destroy_mig_instance(self, gpu_index: int, mig_uuid: str) -> None:
        with self._lock:
            gpu = self._gpu(gpu_index)
            remaining = [m for m in gpu.mig if m.uuid != mig_uuid]
            if len(remaining) == len(gpu.mig):
                raise ValueError(f"no MIG device {mig_uuid} on GPU {gpu_index}")
            gpu.mig = remaining

    def _gpu(self, index: int) -> _SimGpu:
        for gpu in self._gpus:
            if gpu.spec.index == index:
                return gpu
        indexes = ", ".join(str(gpu.spec.index) for gpu in self._gpus) or "none"
        raise ValueError(f"no GPU {index} on node {self.node.name} (GPUs: {indexes})")

    def _device(self, gpu: _SimGpu) -> GpuDevice:
        spec = gpu.spec
        return GpuDevice(
            uuid=spec.uuid,
            index=spec.index,
            name=CATALOGUE[spec.model].nvml_names[0],
            model=spec.model,
            memory_mib=spec.memory_mib,
            mig_enabled=spec.mig_enabled,
            mig_instances=tuple(gpu.mig),
            nvlink_peers=spec.nvlink_peers,
            pci_bus_id=spec.pci_bus_id,
        )


def _sample(gpu: _SimGpu) -> GpuSample:
    faults = gpu.faults
    if "lost" in faults:
        return GpuSample(uuid=gpu.spec.uuid, lost=True)
    mig = gpu.spec.mig_enabled
    # Under MIG, NVML has no remapped-row figures: None unless a fault is injected.
    rows_default = None if mig else False
    return GpuSample(
        uuid=gpu.spec.uuid,
        temperature_c=faults.get("temperature", _IDLE_TEMPERATURE_C + gpu.spec.index % 4),
        slowdown_temp_c=_SLOWDOWN_C,
        shutdown_temp_c=_SHUTDOWN_C,
        ecc_uncorrected_volatile=int(faults.get("ecc", 0)),
        retired_pages_pending=True if "retired_pending" in faults else None,
        remapped_rows_pending=True if "remap_pending" in faults else rows_default,
        remapped_rows_failure=True if "remap_failure" in faults else rows_default,
        clock_event_reasons=CLOCK_EVENT_HW_SLOWDOWN if "slowdown" in faults else 0,
        power_mw=_IDLE_POWER_MW,
        utilization_pct=None if mig else 0,
        memory_used_mib=0,
    )
