"""MIG realisation: before a MIG allocation's workers start, the agent makes
its GPU and compute instance at the scheduler's placement (memory slice
start) and reports the MIG device UUID; after release it destroys it.

An instance already at that placement (made before an agent restart) is
adopted rather than made twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from agent.nvml import NvmlBackend
from agent.workers.gang import GangSpec, RankBinding
from gpupool.v1 import agents_pb2

log = logging.getLogger(__name__)


class MigRealiser:
    def __init__(
        self, backend: NvmlBackend, node: str, send: Callable[[agents_pb2.AgentMessage], None]
    ) -> None:
        self._backend = backend
        self._node = node
        self._send = send
        self._lock = threading.Lock()
        # allocation id -> [(gpu index, MIG device uuid)] this agent made or adopted
        self._made: dict[str, list[tuple[int, str]]] = {}

    def realise(self, spec: GangSpec) -> dict[int, str] | None:
        """rank -> MIG device UUID for this node's MIG ranks; None on failure."""
        devices: dict[int, str] = {}
        for binding in spec.local(self._node):
            if not binding.mig_profile:
                continue
            uuid = self._existing(binding) or self._create(spec.allocation_id, binding)
            if uuid is None:
                return None
            devices[binding.rank] = uuid
            with self._lock:
                made = self._made.setdefault(spec.allocation_id, [])
                if (binding.gpu_index, uuid) not in made:
                    made.append((binding.gpu_index, uuid))
            if uuid != binding.mig_device_uuid:
                report = agents_pb2.MigDeviceReport(
                    allocation_id=spec.allocation_id,
                    gpu_uuid=binding.gpu_uuid,
                    mig_start=binding.mig_start,
                    mig_device_uuid=uuid,
                )
                self._send(agents_pb2.AgentMessage(mig_device=report))
        return devices

    def release(self, allocation_id: str) -> None:
        with self._lock:
            made = self._made.pop(allocation_id, [])
        for gpu_index, uuid in made:
            try:
                self._backend.destroy_mig_instance(gpu_index, uuid)
                log.info("destroyed MIG device %s of %s", uuid, allocation_id)
            except ValueError as exc:
                log.warning("destroying MIG device %s: %s", uuid, exc)

    def held(self) -> set[str]:
        with self._lock:
            return set(self._made)

    def _existing(self, binding: RankBinding) -> str | None:
        for device in self._backend.devices():
            if device.uuid != binding.gpu_uuid:
                continue
            for instance in device.mig_instances:
                if instance.start == binding.mig_start and instance.profile == binding.mig_profile:
                    return instance.uuid
        return None

    def _create(self, allocation_id: str, binding: RankBinding) -> str | None:
        try:
            info = self._backend.create_mig_instance(
                binding.gpu_index, binding.mig_profile, binding.mig_start
            )
        except ValueError as exc:
            log.error("cannot realise %s for %s: %s", binding.mig_profile, allocation_id, exc)
            return None
        log.info("created MIG device %s (%s) for %s", info.uuid, info.profile, allocation_id)
        return info.uuid
