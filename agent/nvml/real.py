"""NVML through pynvml, for real GPU hosts.

Every optional figure is guarded: NOT_SUPPORTED (ECC on consumer parts, remapped
rows under MIG, retired pages on Ampere and later, ...) becomes None, any other
NVML error becomes None plus a log line, and GPU_IS_LOST turns the whole sample
into a lost one instead of an exception. Static facts (name, memory, PCI bus id,
NVLink peers) are read once; MIG state is re-read by every devices() call, since
an operator may change it while the agent runs.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pynvml

from agent.nvml.types import GpuDevice, GpuSample, MigInstanceInfo, XidEvent
from scheduler.domain.catalogue import resolve_model_name

log = logging.getLogger(__name__)

_MIB = 1024 * 1024
_NVLINK_LINKS = 18  # the most any GPU has (H100: 18 NVLink 4 links)
_EVENT_WAIT_MS = 1000
_EVENT_BACKLOG = 4096  # Xid events kept when nobody drains them


class _GpuLost(Exception):
    """An NVML call on this GPU answered GPU_IS_LOST."""


class RealNvml:
    """NvmlBackend over pynvml (or a module with the same names, for tests)."""

    simulated = False

    def __init__(self, nvml_module: Any = None) -> None:
        self._nvml: Any = pynvml if nvml_module is None else nvml_module
        self._nvml.nvmlInit()
        self._warned: set[tuple[str, str]] = set()
        self._handles: dict[str, Any] = {}
        # Last known info per UUID, in index order: what devices() reports for a lost GPU.
        self._known: dict[str, GpuDevice] = {}
        self._events: deque[XidEvent] = deque(maxlen=_EVENT_BACKLOG)
        self._events_lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        try:
            self._discover()
            self._event_set, self._xid_sources = self._register_xid_events()
        except BaseException:
            self._nvml.nvmlShutdown()
            raise
        if self._event_set is not None:
            self._thread = threading.Thread(target=self._watch_xids, name="nvml-xid", daemon=True)
            self._thread.start()

    @property
    def xid_watched(self) -> frozenset[str]:
        """UUIDs of the GPUs whose Xid events this backend receives."""
        return frozenset(self._xid_sources.values())

    def devices(self) -> list[GpuDevice]:
        result: list[GpuDevice] = []
        for uuid, known in list(self._known.items()):
            try:
                enabled, instances = self._read_mig(known, self._handles[uuid])
            except _GpuLost:
                self._warn_once(uuid, "devices", "GPU is lost; reporting its last known info")
                result.append(known)
                continue
            current = replace(known, mig_enabled=enabled, mig_instances=instances)
            self._known[uuid] = current
            result.append(current)
        return result

    def sample(self, uuid: str) -> GpuSample:
        handle = self._handles.get(uuid)
        if handle is None:
            raise KeyError(f"no GPU {uuid} on this host")
        try:
            return self._read_sample(uuid, handle)
        except _GpuLost:
            self._warn_once(uuid, "sample", "GPU is lost (GPU_IS_LOST)")
            return GpuSample(uuid=uuid, lost=True)

    def drain_xid_events(self) -> list[XidEvent]:
        with self._events_lock:
            events = list(self._events)
            self._events.clear()
        return events

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            # The watcher wakes at least once per wait timeout; the set must outlive its wait.
            self._thread.join(timeout=3 * _EVENT_WAIT_MS / 1000)
        n = self._nvml
        try:
            if self._event_set is not None:
                n.nvmlEventSetFree(self._event_set)
        except n.NVMLError as exc:
            log.warning("freeing the NVML event set failed: %s", exc)
        try:
            n.nvmlShutdown()
        except n.NVMLError as exc:
            log.warning("nvmlShutdown failed: %s", exc)

    # --- discovery ---------------------------------------------------------------

    def _discover(self) -> None:
        n = self._nvml
        for index in range(int(n.nvmlDeviceGetCount())):
            try:
                handle = n.nvmlDeviceGetHandleByIndex(index)
                uuid = _text(n.nvmlDeviceGetUUID(handle))
                name = _text(n.nvmlDeviceGetName(handle))
                pci_bus_id = _text(n.nvmlDeviceGetPciInfo(handle).busId)
            except n.NVMLError as exc:
                log.error("GPU %d cannot be identified (%s); leaving it out", index, exc)
                continue
            try:
                memory = self._call(uuid, "memory", n.nvmlDeviceGetMemoryInfo, handle)
            except _GpuLost:
                memory = None
            model = resolve_model_name(name)
            self._handles[uuid] = handle
            self._known[uuid] = GpuDevice(
                uuid=uuid,
                index=index,
                name=name,
                model="" if model is None else model.name,
                memory_mib=0 if memory is None else int(memory.total) // _MIB,
                mig_enabled=False,
                mig_instances=(),
                nvlink_peers=(),
                pci_bus_id=pci_bus_id,
            )
        for uuid, device in self._known.items():
            self._known[uuid] = replace(device, nvlink_peers=self._nvlink_peers(device))
        self.devices()  # fills in the MIG state

    def _nvlink_peers(self, device: GpuDevice) -> tuple[int, ...]:
        """Peers by active links' remote PCI ids (direct links and bridges), plus NVLink
        P2P (the remote end of a link through an NVSwitch is the switch, not a GPU)."""
        n = self._nvml
        handle = self._handles[device.uuid]
        by_bus = {_bus_key(d.pci_bus_id): d.index for d in self._known.values()}
        peers: set[int] = set()
        for link in range(_NVLINK_LINKS):
            try:
                if int(n.nvmlDeviceGetNvLinkState(handle, link)) != n.NVML_FEATURE_ENABLED:
                    continue
                remote = _text(n.nvmlDeviceGetNvLinkRemotePciInfo(handle, link).busId)
            except n.NVMLError:
                continue  # probing: links this GPU lacks, or no NVLink at all, answer errors
            peer = by_bus.get(_bus_key(remote))
            if peer is not None and peer != device.index:
                peers.add(peer)
        for other in self._known.values():
            if other.index == device.index or other.index in peers:
                continue
            try:
                status = n.nvmlDeviceGetP2PStatus(
                    handle, self._handles[other.uuid], n.NVML_P2P_CAPS_INDEX_NVLINK
                )
            except n.NVMLError:
                continue
            if int(status) == n.NVML_P2P_STATUS_OK:
                peers.add(other.index)
        return tuple(sorted(peers))

    def _read_mig(self, device: GpuDevice, handle: Any) -> tuple[bool, tuple[MigInstanceInfo, ...]]:
        n = self._nvml
        uuid = device.uuid
        mode = self._call(uuid, "MIG mode", n.nvmlDeviceGetMigMode, handle)
        if mode is None or int(mode[0]) != n.NVML_DEVICE_MIG_ENABLE:
            return False, ()
        slots = self._call(uuid, "MIG device count", n.nvmlDeviceGetMaxMigDeviceCount, handle)
        instances: list[MigInstanceInfo] = []
        for slot in range(int(slots or 0)):
            mig = self._call(
                uuid, "MIG device", n.nvmlDeviceGetMigDeviceHandleByIndex, handle, slot
            )
            mig_uuid = (
                None if mig is None else self._call(uuid, "MIG UUID", n.nvmlDeviceGetUUID, mig)
            )
            if mig_uuid is None:
                continue  # an empty slot answers NOT_FOUND
            # A MIG device's name ends in its profile: "NVIDIA A100-SXM4-40GB MIG 1g.5gb".
            name = _text(self._call(uuid, "MIG name", n.nvmlDeviceGetName, mig) or "")
            profile = name.rpartition("MIG ")[2] if "MIG " in name else ""
            start, size = self._mig_placement(device, handle, mig, profile)
            instances.append(MigInstanceInfo(profile, start, size, _text(mig_uuid)))
        return True, tuple(instances)

    def _mig_placement(
        self, device: GpuDevice, handle: Any, mig: Any, profile: str
    ) -> tuple[int, int]:
        """(start, size) in memory slices; (-1, catalogue size or 0) when NVML won't say."""
        n = self._nvml
        uuid = device.uuid
        gi_id = self._call(uuid, "GPU instance id", n.nvmlDeviceGetGpuInstanceId, mig)
        gi = (
            None
            if gi_id is None
            else self._call(uuid, "GPU instance", n.nvmlDeviceGetGpuInstanceById, handle, gi_id)
        )
        info = (
            None
            if gi is None
            else self._call(uuid, "GPU instance info", n.nvmlGpuInstanceGetInfo, gi)
        )
        if info is not None:
            return int(info.placement.start), int(info.placement.size)
        model = resolve_model_name(device.model) if device.model else None
        known = None if model is None else model.mig_profile(profile)
        return -1, 0 if known is None else known.memory_slices

    # --- MIG realisation -----------------------------------------------------------

    def create_mig_instance(
        self, gpu_index: int, profile: str, start: int | None = None
    ) -> MigInstanceInfo:
        """GPU instance at the scheduler's placement, one full compute instance
        in it, and the MIG device that NVML then exposes (needs root)."""
        n = self._nvml
        device = self._device_at(gpu_index)
        handle = self._handles[device.uuid]
        gi_profile = self._gpu_instance_profile(handle, profile)
        placements = n.nvmlDeviceGetGpuInstancePossiblePlacements(handle, gi_profile.id)
        chosen = [p for p in placements if start is None or int(p.start) == start]
        if not chosen:
            raise ValueError(f"{profile} cannot start at slice {start} on GPU {gpu_index}")
        placement = n.c_nvmlGpuInstancePlacement_t()
        placement.start, placement.size = int(chosen[0].start), int(chosen[0].size)
        try:
            gi = n.nvmlDeviceCreateGpuInstanceWithPlacement(handle, gi_profile.id, placement)
        except n.NVMLError as exc:
            raise ValueError(f"creating {profile} on GPU {gpu_index}: {exc}") from exc
        try:
            ci_profile = n.nvmlGpuInstanceGetComputeInstanceProfileInfo(
                gi,
                _compute_profile(n, int(gi_profile.sliceCount)),
                n.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED,
            )
            n.nvmlGpuInstanceCreateComputeInstance(gi, ci_profile.id)
            gi_id = int(n.nvmlGpuInstanceGetInfo(gi).id)
            mig_uuid = self._mig_uuid(handle, gi_id)
        except BaseException:
            n.nvmlGpuInstanceDestroy(gi)  # no half-made instance left behind
            raise
        return MigInstanceInfo(profile, placement.start, placement.size, mig_uuid)

    def destroy_mig_instance(self, gpu_index: int, mig_uuid: str) -> None:
        n = self._nvml
        handle = self._handles[self._device_at(gpu_index).uuid]
        for slot in range(int(n.nvmlDeviceGetMaxMigDeviceCount(handle))):
            try:
                mig = n.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            except n.NVMLError:
                continue  # an empty slot
            if _text(n.nvmlDeviceGetUUID(mig)) != mig_uuid:
                continue
            gi = n.nvmlDeviceGetGpuInstanceById(handle, n.nvmlDeviceGetGpuInstanceId(mig))
            ci = n.nvmlGpuInstanceGetComputeInstanceById(gi, n.nvmlDeviceGetComputeInstanceId(mig))
            n.nvmlComputeInstanceDestroy(ci)
            n.nvmlGpuInstanceDestroy(gi)
            return
        raise ValueError(f"no MIG device {mig_uuid} on GPU {gpu_index}")

    def _device_at(self, gpu_index: int) -> GpuDevice:
        for device in self._known.values():
            if device.index == gpu_index:
                return device
        raise ValueError(f"no GPU with index {gpu_index} on this host")

    def _gpu_instance_profile(self, handle: Any, profile: str) -> Any:
        """The NVML GPU instance profile whose compute slices and memory match
        a name like "3g.40gb" (NVML numbers profiles, it does not name them)."""
        n = self._nvml
        compute_text, _, memory_text = profile.partition("g.")
        compute = int(compute_text)
        memory_gb = int(memory_text.rstrip("gb").split("+")[0] or 0)
        for name in dir(n):
            if not name.startswith("NVML_GPU_INSTANCE_PROFILE_") or name.endswith("_COUNT"):
                continue
            try:
                info = n.nvmlDeviceGetGpuInstanceProfileInfo(handle, getattr(n, name))
            except n.NVMLError:
                continue  # not offered on this GPU
            memory = round(int(info.memorySizeMB) / 1024)
            if int(info.sliceCount) == compute and abs(memory - memory_gb) <= 1:
                return info
        raise ValueError(f"this GPU offers no MIG profile {profile}")

    def _mig_uuid(self, handle: Any, gi_id: int) -> str:
        n = self._nvml
        for slot in range(int(n.nvmlDeviceGetMaxMigDeviceCount(handle))):
            try:
                mig = n.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            except n.NVMLError:
                continue
            if int(n.nvmlDeviceGetGpuInstanceId(mig)) == gi_id:
                return _text(n.nvmlDeviceGetUUID(mig))
        raise ValueError(f"NVML shows no MIG device for GPU instance {gi_id}")

    # --- health samples ------------------------------------------------------------

    def _read_sample(self, uuid: str, handle: Any) -> GpuSample:
        n = self._nvml

        def read(figure: str, fn: Callable[..., Any], *args: Any) -> Any:
            return self._call(uuid, figure, fn, handle, *args)

        threshold = n.nvmlDeviceGetTemperatureThreshold
        remapped = read("remapped rows", n.nvmlDeviceGetRemappedRows)
        utilization = read("utilization", n.nvmlDeviceGetUtilizationRates)
        memory = read("memory", n.nvmlDeviceGetMemoryInfo)
        return GpuSample(
            uuid=uuid,
            temperature_c=_float(
                read("temperature", n.nvmlDeviceGetTemperature, n.NVML_TEMPERATURE_GPU)
            ),
            slowdown_temp_c=_float(
                read("slowdown temperature", threshold, n.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN)
            ),
            shutdown_temp_c=_float(
                read("shutdown temperature", threshold, n.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN)
            ),
            ecc_uncorrected_volatile=_int(
                read(
                    "uncorrected ECC errors",
                    n.nvmlDeviceGetTotalEccErrors,
                    n.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                    n.NVML_VOLATILE_ECC,
                )
            ),
            retired_pages_pending=_bool(
                read("retired pages pending", n.nvmlDeviceGetRetiredPagesPendingStatus)
            ),
            # (corrected, uncorrected, pending, failure)
            remapped_rows_pending=None if remapped is None else bool(remapped[2]),
            remapped_rows_failure=None if remapped is None else bool(remapped[3]),
            clock_event_reasons=_int(read("clock event reasons", self._clock_event_reasons)),
            power_mw=_int(read("power", n.nvmlDeviceGetPowerUsage)),
            utilization_pct=None if utilization is None else int(utilization.gpu),
            memory_used_mib=None if memory is None else int(memory.used) // _MIB,
        )

    def _clock_event_reasons(self, handle: Any) -> Any:
        """The current name where pynvml and the driver have it, else the deprecated one."""
        n = self._nvml
        current = getattr(n, "nvmlDeviceGetCurrentClocksEventReasons", None)
        if current is not None:
            try:
                return current(handle)
            except n.NVMLError_FunctionNotFound:
                pass  # a driver older than the EventReasons name
        return n.nvmlDeviceGetCurrentClocksThrottleReasons(handle)

    def _call(self, uuid: str, figure: str, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args); None when unsupported, absent or failing; _GpuLost when the GPU is gone."""
        n = self._nvml
        try:
            return fn(*args)
        except n.NVMLError_GpuIsLost as exc:
            raise _GpuLost(uuid) from exc
        except (n.NVMLError_NotSupported, n.NVMLError_NotFound):
            return None
        except n.NVMLError as exc:
            self._warn_once(uuid, figure, f"cannot read {figure}: {exc}")
            return None

    def _warn_once(self, uuid: str, topic: str, message: str) -> None:
        """A warning the first time, then debug lines: the agent samples every few seconds."""
        first = (uuid, topic) not in self._warned
        self._warned.add((uuid, topic))
        log.log(logging.WARNING if first else logging.DEBUG, "GPU %s: %s", uuid, message)

    # --- Xid events ------------------------------------------------------------------

    def _register_xid_events(self) -> tuple[Any, dict[int, str]]:
        n = self._nvml
        try:
            event_set = n.nvmlEventSetCreate()
        except n.NVMLError as exc:
            log.warning("Xid events unavailable: %s", exc)
            return None, {}
        sources: dict[int, str] = {}
        for uuid, handle in self._handles.items():
            try:
                n.nvmlDeviceRegisterEvents(handle, n.nvmlEventTypeXidCriticalError, event_set)
            except n.NVMLError_NotSupported:
                log.info("GPU %s does not report Xid events", uuid)
                continue
            except n.NVMLError as exc:
                log.warning("GPU %s: cannot watch Xid events: %s", uuid, exc)
                continue
            sources[_handle_key(handle)] = uuid
        return event_set, sources

    def _watch_xids(self) -> None:
        n = self._nvml
        last_error = ""
        while not self._stop.is_set():
            try:
                data = n.nvmlEventSetWait(self._event_set, _EVENT_WAIT_MS)
            except n.NVMLError_Timeout:
                continue
            except n.NVMLError as exc:
                # A persistent error (a lost GPU) must neither spin nor flood the log.
                repeated = str(exc) == last_error
                last_error = str(exc)
                log.log(logging.DEBUG if repeated else logging.WARNING, "Xid wait failed: %s", exc)
                self._stop.wait(1.0)
                continue
            xid = int(data.eventData)
            uuid = self._xid_sources.get(_handle_key(data.device))
            if uuid is None:
                log.warning("Xid %d from a GPU this backend does not know", xid)
                continue
            log.warning("GPU %s: Xid %d", uuid, xid)
            with self._events_lock:
                self._events.append(XidEvent(uuid=uuid, xid=xid, at=time.time()))


def _compute_profile(n: Any, slices: int) -> int:
    """The compute instance profile that spans a GPU instance of `slices`."""
    names = {
        1: "NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE",
        2: "NVML_COMPUTE_INSTANCE_PROFILE_2_SLICE",
        3: "NVML_COMPUTE_INSTANCE_PROFILE_3_SLICE",
        4: "NVML_COMPUTE_INSTANCE_PROFILE_4_SLICE",
        6: "NVML_COMPUTE_INSTANCE_PROFILE_6_SLICE",
        7: "NVML_COMPUTE_INSTANCE_PROFILE_7_SLICE",
    }
    return int(getattr(n, names[slices]))


def _handle_key(handle: Any) -> int:
    """NVML handles are ctypes pointers, a new object per call: key them by address."""
    try:
        return int(ctypes.cast(handle, ctypes.c_void_p).value or 0)
    except ctypes.ArgumentError:
        return id(handle)  # a stand-in module's handles are plain objects


def _bus_key(bus_id: str) -> str:
    """A PCI bus id compared regardless of case and domain width ("0000:" vs "00000000:")."""
    domain, sep, rest = bus_id.strip().lower().partition(":")
    try:
        return f"{int(domain, 16):08x}{sep}{rest}"
    except ValueError:
        return bus_id.strip().lower()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)
