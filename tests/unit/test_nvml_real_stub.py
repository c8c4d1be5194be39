"""RealNvml against a stand-in for the pynvml module: discovery, guarded figures, Xid events.

The stand-in mirrors pynvml's names, constants and error classes (with their real
codes), so these tests pin down which NVML calls RealNvml makes and how it takes
each failure; tests/gpu checks the same against a real GPU.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from agent.nvml import GpuSample, MigInstanceInfo, NvmlBackend, RealNvml, XidEvent

MIB = 1024 * 1024


class NVMLError(Exception):
    value = 999  # NVML_ERROR_UNKNOWN

    def __init__(self, value: int | None = None) -> None:
        if value is not None:
            self.value = value
        super().__init__(f"NVML error {self.value}")


class NVMLError_NotSupported(NVMLError):
    value = 3


class NVMLError_NoPermission(NVMLError):
    value = 4


class NVMLError_NotFound(NVMLError):
    value = 6


class NVMLError_Timeout(NVMLError):
    value = 10


class NVMLError_FunctionNotFound(NVMLError):
    value = 13


class NVMLError_GpuIsLost(NVMLError):
    value = 15


@dataclass(eq=False)
class FakeMig:
    uuid: str
    name: str
    gi_id: int
    placement: tuple[int, int] | None  # None: querying the GPU instance needs privileges


@dataclass(eq=False)
class FakeGpu:
    uuid: str
    name: str
    bus_id: str
    memory_mib: int
    mig_mode: list[int] = field(default_factory=lambda: [0, 0])
    mig_slots: list[FakeMig | None] = field(default_factory=list)
    links: dict[int, str] = field(default_factory=dict)  # active link -> remote PCI bus id
    # NVML function names that answer NOT_SUPPORTED, FUNCTION_NOT_FOUND, or UNKNOWN.
    unsupported: set[str] = field(default_factory=set)
    absent: set[str] = field(default_factory=set)
    failing: set[str] = field(default_factory=set)
    lost: bool = False
    temperature: int = 41
    ecc: int = 0
    remapped: tuple[int, int, int, int] = (0, 0, 0, 0)
    reasons: int = 0x1
    throttle_reasons: int = 0x1


class FakeNvml:
    """The parts of pynvml RealNvml uses. Handles are the FakeGpu / FakeMig objects."""

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_NoPermission = NVMLError_NoPermission
    NVMLError_NotFound = NVMLError_NotFound
    NVMLError_Timeout = NVMLError_Timeout
    NVMLError_FunctionNotFound = NVMLError_FunctionNotFound
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVML_FEATURE_ENABLED = 1
    NVML_TEMPERATURE_GPU = 0
    NVML_TEMPERATURE_THRESHOLD_SHUTDOWN = 0
    NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    NVML_VOLATILE_ECC = 0
    NVML_DEVICE_MIG_ENABLE = 1
    NVML_P2P_CAPS_INDEX_NVLINK = 2
    NVML_P2P_STATUS_OK = 0
    NVML_P2P_STATUS_NOT_SUPPORTED = 5
    nvmlEventTypeXidCriticalError = 0x8

    def __init__(self, gpus: list[FakeGpu], p2p: set[frozenset[int]] | None = None) -> None:
        self.gpus = gpus
        self.p2p = p2p or set()
        self.inits = self.shutdowns = 0
        self.event_set = object()
        self.registered: list[str] = []
        self.freed: list[object] = []
        self.pending: queue.Queue[SimpleNamespace | NVMLError] = queue.Queue()

    def fire_xid(self, index: int, xid: int) -> None:
        event = SimpleNamespace(device=self.gpus[index], eventType=0x8, eventData=xid)
        self.pending.put(event)

    def _gpu(self, handle: Any, function: str) -> FakeGpu:
        gpu = handle if isinstance(handle, FakeGpu) else self._owner(handle)
        if gpu.lost:
            raise NVMLError_GpuIsLost()
        if function in gpu.unsupported:
            raise NVMLError_NotSupported()
        if function in gpu.absent:
            raise NVMLError_FunctionNotFound()
        if function in gpu.failing:
            raise NVMLError()  # NVML_ERROR_UNKNOWN
        return gpu

    def _owner(self, mig: FakeMig) -> FakeGpu:
        return next(g for g in self.gpus if mig in g.mig_slots)

    def nvmlInit(self) -> None:
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        self._gpu(handle, "nvmlDeviceGetUUID")
        return str(handle.uuid)

    def nvmlDeviceGetName(self, handle: Any) -> str:
        self._gpu(handle, "nvmlDeviceGetName")
        return str(handle.name)

    def nvmlDeviceGetPciInfo(self, handle: FakeGpu) -> SimpleNamespace:
        return SimpleNamespace(busId=self._gpu(handle, "nvmlDeviceGetPciInfo").bus_id.encode())

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu) -> SimpleNamespace:
        gpu = self._gpu(handle, "nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(total=gpu.memory_mib * MIB, used=2048 * MIB, free=0)

    def nvmlDeviceGetTemperature(self, handle: FakeGpu, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._gpu(handle, "nvmlDeviceGetTemperature").temperature

    def nvmlDeviceGetTemperatureThreshold(self, handle: FakeGpu, threshold: int) -> int:
        self._gpu(handle, "nvmlDeviceGetTemperatureThreshold")
        return {self.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: 87, 0: 92}[threshold]

    def nvmlDeviceGetTotalEccErrors(self, handle: FakeGpu, error: int, counter: int) -> int:
        assert (error, counter) == (1, 0)
        return self._gpu(handle, "nvmlDeviceGetTotalEccErrors").ecc

    def nvmlDeviceGetRetiredPagesPendingStatus(self, handle: FakeGpu) -> int:
        self._gpu(handle, "nvmlDeviceGetRetiredPagesPendingStatus")
        return 0

    def nvmlDeviceGetRemappedRows(self, handle: FakeGpu) -> tuple[int, int, int, int]:
        return self._gpu(handle, "nvmlDeviceGetRemappedRows").remapped

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: FakeGpu) -> int:
        return self._gpu(handle, "nvmlDeviceGetCurrentClocksEventReasons").reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: FakeGpu) -> int:
        return self._gpu(handle, "nvmlDeviceGetCurrentClocksThrottleReasons").throttle_reasons

    def nvmlDeviceGetPowerUsage(self, handle: FakeGpu) -> int:
        self._gpu(handle, "nvmlDeviceGetPowerUsage")
        return 71_500

    def nvmlDeviceGetUtilizationRates(self, handle: FakeGpu) -> SimpleNamespace:
        self._gpu(handle, "nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=13, memory=4)

    def nvmlDeviceGetMigMode(self, handle: FakeGpu) -> list[int]:
        return self._gpu(handle, "nvmlDeviceGetMigMode").mig_mode

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: FakeGpu) -> int:
        return len(self._gpu(handle, "nvmlDeviceGetMaxMigDeviceCount").mig_slots)

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: FakeGpu, index: int) -> FakeMig:
        mig = self._gpu(handle, "nvmlDeviceGetMigDeviceHandleByIndex").mig_slots[index]
        if mig is None:
            raise NVMLError_NotFound()
        return mig

    def nvmlDeviceGetGpuInstanceId(self, mig: FakeMig) -> int:
        self._gpu(mig, "nvmlDeviceGetGpuInstanceId")
        return mig.gi_id

    def nvmlDeviceGetGpuInstanceById(self, handle: FakeGpu, gi_id: int) -> FakeMig:
        gpu = self._gpu(handle, "nvmlDeviceGetGpuInstanceById")
        mig = next(m for m in gpu.mig_slots if m is not None and m.gi_id == gi_id)
        if mig.placement is None:
            raise NVMLError_NoPermission()
        return mig

    def nvmlGpuInstanceGetInfo(self, gi: FakeMig) -> SimpleNamespace:
        assert gi.placement is not None
        start, size = gi.placement
        return SimpleNamespace(placement=SimpleNamespace(start=start, size=size))

    def nvmlDeviceGetNvLinkState(self, handle: FakeGpu, link: int) -> int:
        if link >= 18:
            raise NVMLError(2)  # NVML_ERROR_INVALID_ARGUMENT
        return 1 if link in self._gpu(handle, "nvmlDeviceGetNvLinkState").links else 0

    def nvmlDeviceGetNvLinkRemotePciInfo(self, handle: FakeGpu, link: int) -> SimpleNamespace:
        remote = self._gpu(handle, "nvmlDeviceGetNvLinkRemotePciInfo").links[link]
        return SimpleNamespace(busId=remote.encode())

    def nvmlDeviceGetP2PStatus(self, first: FakeGpu, second: FakeGpu, caps: int) -> int:
        assert caps == self.NVML_P2P_CAPS_INDEX_NVLINK
        self._gpu(first, "nvmlDeviceGetP2PStatus")
        pair = frozenset({self.gpus.index(first), self.gpus.index(second)})
        return self.NVML_P2P_STATUS_OK if pair in self.p2p else self.NVML_P2P_STATUS_NOT_SUPPORTED

    def nvmlEventSetCreate(self) -> object:
        return self.event_set

    def nvmlDeviceRegisterEvents(self, handle: FakeGpu, types: int, event_set: object) -> None:
        assert (types, event_set) == (self.nvmlEventTypeXidCriticalError, self.event_set)
        self.registered.append(self._gpu(handle, "nvmlDeviceRegisterEvents").uuid)

    def nvmlEventSetWait(self, event_set: object, timeout_ms: int) -> SimpleNamespace:
        assert timeout_ms > 0
        try:
            item = self.pending.get(timeout=0.02)  # short: keeps close() quick in tests
        except queue.Empty:
            raise NVMLError_Timeout() from None
        if isinstance(item, NVMLError):
            raise item
        return item

    def nvmlEventSetFree(self, event_set: object) -> None:
        self.freed.append(event_set)


H100_0 = "GPU-00000000-0000-0000-0000-000000000000"
H100_1 = "GPU-11111111-1111-1111-1111-111111111111"
A100_MIG = "GPU-22222222-2222-2222-2222-222222222222"
L4 = "GPU-33333333-3333-3333-3333-333333333333"


def h100(uuid: str, bus_id: str, **kw: Any) -> FakeGpu:
    return FakeGpu(uuid, "NVIDIA H100 80GB HBM3", bus_id, 81559, **kw)


def mixed_host() -> FakeNvml:
    """Two bridged H100s, an A100 in MIG mode, and an L4 with consumer-style gaps."""
    return FakeNvml(
        [
            h100(H100_0, "00000000:18:00.0", links={0: "0000:28:00.0", 2: "00000000:A0:00.0"}),
            h100(H100_1, "00000000:28:00.0", links={0: "00000000:18:00.0"}),
            FakeGpu(
                A100_MIG,
                "NVIDIA A100-SXM4-40GB",
                "00000000:38:00.0",
                40960,
                mig_mode=[1, 1],
                mig_slots=[
                    FakeMig("MIG-aaaa", "NVIDIA A100-SXM4-40GB MIG 3g.20gb", 2, (4, 4)),
                    None,
                    FakeMig("MIG-bbbb", "NVIDIA A100-SXM4-40GB MIG 1g.5gb", 9, None),
                ],
                unsupported={"nvmlDeviceGetRemappedRows", "nvmlDeviceGetUtilizationRates"},
            ),
            FakeGpu(
                L4,
                "NVIDIA L4",
                "00000000:48:00.0",
                23034,
                unsupported={
                    "nvmlDeviceGetTotalEccErrors",
                    "nvmlDeviceGetRetiredPagesPendingStatus",
                    "nvmlDeviceGetRemappedRows",
                    "nvmlDeviceGetMigMode",
                    "nvmlDeviceGetNvLinkState",
                    "nvmlDeviceRegisterEvents",
                },
                absent={"nvmlDeviceGetCurrentClocksEventReasons"},
                throttle_reasons=0x20,
            ),
        ]
    )


@pytest.fixture
def nvml() -> FakeNvml:
    return mixed_host()


@pytest.fixture
def backend(nvml: FakeNvml) -> Iterator[RealNvml]:
    real = RealNvml(nvml_module=nvml)
    yield real
    real.close()


def test_it_is_an_nvml_backend_and_initialises_once(nvml: FakeNvml, backend: RealNvml) -> None:
    as_protocol: NvmlBackend = backend
    assert as_protocol.simulated is False
    backend.devices()
    backend.sample(H100_0)
    assert nvml.inits == 1


def test_discovery_fields(backend: RealNvml) -> None:
    h100, h100_b, a100, l4 = backend.devices()
    assert (h100.uuid, h100.index, h100.name) == (H100_0, 0, "NVIDIA H100 80GB HBM3")
    assert h100.model == "H100-80GB"
    assert h100.memory_mib == 81559
    assert h100.pci_bus_id == "00000000:18:00.0"
    assert not h100.mig_enabled and h100.mig_instances == ()
    # Link 0 names its peer with a short PCI domain; link 2 ends at an NVSwitch.
    assert h100.nvlink_peers == (1,)
    assert h100_b.nvlink_peers == (0,)
    assert (a100.model, a100.memory_mib, a100.nvlink_peers) == ("A100-40GB", 40960, ())
    assert (l4.model, l4.mig_enabled, l4.nvlink_peers) == ("L4", False, ())


def test_mig_mode_and_instances(backend: RealNvml) -> None:
    a100 = backend.devices()[2]
    assert a100.mig_enabled
    assert a100.mig_instances == (
        MigInstanceInfo("3g.20gb", 4, 4, "MIG-aaaa"),
        # The GPU instance query answered NO_PERMISSION: start unknown, size from the catalogue.
        MigInstanceInfo("1g.5gb", -1, 1, "MIG-bbbb"),
    )


def test_mig_state_is_re_read_on_every_call(nvml: FakeNvml, backend: RealNvml) -> None:
    nvml.gpus[2].mig_mode = [0, 0]
    assert not backend.devices()[2].mig_enabled


def test_nvlink_peers_through_an_nvswitch_come_from_p2p_status() -> None:
    switch = "00000000:C0:00.0"
    nvml = FakeNvml(
        [
            h100(H100_0, "00000000:18:00.0", links={0: switch}),
            h100(H100_1, "00000000:28:00.0", links={0: switch}),
        ],
        p2p={frozenset({0, 1})},
    )
    backend = RealNvml(nvml_module=nvml)
    try:
        assert [d.nvlink_peers for d in backend.devices()] == [(1,), (0,)]
    finally:
        backend.close()


def test_a_full_sample(backend: RealNvml) -> None:
    assert backend.sample(H100_0) == GpuSample(
        uuid=H100_0,
        temperature_c=41.0,
        slowdown_temp_c=87.0,
        shutdown_temp_c=92.0,
        ecc_uncorrected_volatile=0,
        retired_pages_pending=False,
        remapped_rows_pending=False,
        remapped_rows_failure=False,
        clock_event_reasons=0x1,
        power_mw=71_500,
        utilization_pct=13,
        memory_used_mib=2048,
    )


def test_remapped_rows_figures(nvml: FakeNvml, backend: RealNvml) -> None:
    nvml.gpus[0].remapped = (3, 1, 1, 1)
    sample = backend.sample(H100_0)
    assert sample.remapped_rows_pending is True
    assert sample.remapped_rows_failure is True


def test_not_supported_figures_are_none(backend: RealNvml) -> None:
    l4 = backend.sample(L4)
    assert not l4.lost
    assert l4.ecc_uncorrected_volatile is None
    assert l4.retired_pages_pending is None
    assert l4.remapped_rows_pending is None and l4.remapped_rows_failure is None
    assert l4.temperature_c == 41.0
    mig = backend.sample(A100_MIG)
    assert mig.remapped_rows_pending is None and mig.utilization_pct is None


def test_clock_reasons_fall_back_to_the_throttle_name(backend: RealNvml) -> None:
    # The L4's driver lacks ...ClocksEventReasons (FUNCTION_NOT_FOUND).
    assert backend.sample(L4).clock_event_reasons == 0x20


def test_clock_reasons_with_a_pynvml_that_lacks_the_new_name() -> None:
    class OldPynvml(FakeNvml):
        nvmlDeviceGetCurrentClocksEventReasons = None  # type: ignore[assignment]

    old = OldPynvml([h100(H100_0, "00000000:18:00.0", throttle_reasons=0x8)])
    backend = RealNvml(nvml_module=old)
    try:
        assert backend.sample(H100_0).clock_event_reasons == 0x8
    finally:
        backend.close()


def test_clock_reasons_not_supported_is_none(nvml: FakeNvml, backend: RealNvml) -> None:
    nvml.gpus[0].unsupported.add("nvmlDeviceGetCurrentClocksEventReasons")
    assert backend.sample(H100_0).clock_event_reasons is None


def test_other_errors_are_none_with_one_warning(
    nvml: FakeNvml, backend: RealNvml, caplog: pytest.LogCaptureFixture
) -> None:
    nvml.gpus[0].failing.add("nvmlDeviceGetPowerUsage")
    with caplog.at_level(logging.WARNING, logger="agent.nvml.real"):
        assert backend.sample(H100_0).power_mw is None
        assert backend.sample(H100_0).power_mw is None
    warnings = [r.getMessage() for r in caplog.records if "power" in r.getMessage()]
    assert len(warnings) == 1
    assert H100_0 in warnings[0]


def test_a_lost_gpu_gives_a_lost_sample_and_keeps_its_listing(
    nvml: FakeNvml, backend: RealNvml
) -> None:
    before = backend.devices()
    nvml.gpus[2].lost = True
    assert backend.sample(A100_MIG) == GpuSample(uuid=A100_MIG, lost=True)
    assert backend.devices() == before
    assert not backend.sample(H100_0).lost


def test_an_unknown_uuid_is_a_key_error(backend: RealNvml) -> None:
    with pytest.raises(KeyError):
        backend.sample("GPU-unknown")


def test_a_gpu_that_cannot_be_identified_is_left_out() -> None:
    nvml = mixed_host()
    nvml.gpus[1].failing.add("nvmlDeviceGetUUID")
    backend = RealNvml(nvml_module=nvml)
    try:
        assert [d.index for d in backend.devices()] == [0, 2, 3]
        assert backend.devices()[0].nvlink_peers == ()
    finally:
        backend.close()


def wait_for_events(backend: RealNvml, count: int) -> list[XidEvent]:
    events: list[XidEvent] = []
    deadline = time.monotonic() + 5
    while len(events) < count and time.monotonic() < deadline:
        events += backend.drain_xid_events()
        time.sleep(0.01)
    return events


def test_xid_events_arrive_through_the_event_set(nvml: FakeNvml, backend: RealNvml) -> None:
    # The L4 cannot report Xid events: skipped, the others are watched.
    assert backend.xid_watched == {H100_0, H100_1, A100_MIG}
    assert nvml.registered == [H100_0, H100_1, A100_MIG]
    started = time.time()
    nvml.fire_xid(1, 79)
    nvml.fire_xid(2, 13)
    events = wait_for_events(backend, 2)
    assert [(e.uuid, e.xid) for e in events] == [(H100_1, 79), (A100_MIG, 13)]
    assert all(started <= e.at <= time.time() for e in events)
    assert backend.drain_xid_events() == []


def test_the_watcher_survives_a_failing_wait(nvml: FakeNvml, backend: RealNvml) -> None:
    nvml.pending.put(NVMLError_GpuIsLost())
    nvml.fire_xid(0, 48)
    assert [(e.uuid, e.xid) for e in wait_for_events(backend, 1)] == [(H100_0, 48)]


def test_close_stops_the_watcher_frees_the_set_and_shuts_down(nvml: FakeNvml) -> None:
    backend = RealNvml(nvml_module=nvml)
    backend.close()
    backend.close()
    assert nvml.freed == [nvml.event_set]
    assert nvml.shutdowns == 1
    assert backend._thread is not None and not backend._thread.is_alive()
