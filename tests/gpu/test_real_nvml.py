"""RealNvml on real hardware: discovery, a health sample, MIG mode and the Xid event set.

Skipped wherever `pynvml.nvmlInit()` fails (no driver, no GPU). Each figure is
cross-checked against pynvml itself rather than against a particular GPU model.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pynvml
import pytest

from agent.health import DEGRADED, HEALTHY, UNHEALTHY, evaluate
from agent.nvml import RealNvml
from scheduler.domain.catalogue import resolve_model_name


def _nvml_starts() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _nvml_starts(), reason="needs NVML and an NVIDIA GPU"),
]

PCI_BUS_ID = re.compile(r"^[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]$")


@pytest.fixture
def backend() -> Iterator[RealNvml]:
    real = RealNvml()
    yield real
    real.close()


def test_discovery_matches_nvml(backend: RealNvml) -> None:
    devices = backend.devices()
    assert devices, "NVML started but listed no GPU"
    assert [d.index for d in devices] == list(range(len(devices)))
    for device in devices:
        handle = pynvml.nvmlDeviceGetHandleByIndex(device.index)
        assert device.uuid == pynvml.nvmlDeviceGetUUID(handle)
        assert device.uuid.startswith("GPU-")
        assert device.name == pynvml.nvmlDeviceGetName(handle)
        known = resolve_model_name(device.name)
        assert device.model == ("" if known is None else known.name)
        total = pynvml.nvmlDeviceGetMemoryInfo(handle).total
        assert device.memory_mib == total // (1024 * 1024) > 0
        assert PCI_BUS_ID.match(device.pci_bus_id), device.pci_bus_id
        assert set(device.nvlink_peers) <= {d.index for d in devices} - {device.index}


def test_a_health_sample(backend: RealNvml) -> None:
    for device in backend.devices():
        sample = backend.sample(device.uuid)
        assert sample.uuid == device.uuid
        assert not sample.lost
        assert sample.temperature_c is not None and 0 < sample.temperature_c < 130
        if sample.slowdown_temp_c is not None:
            assert sample.slowdown_temp_c > 0
            if sample.shutdown_temp_c is not None:
                assert sample.shutdown_temp_c >= sample.slowdown_temp_c
        if sample.power_mw is not None:
            assert sample.power_mw > 0
        assert sample.memory_used_mib is None or 0 <= sample.memory_used_mib <= device.memory_mib
        assert sample.ecc_uncorrected_volatile is None or sample.ecc_uncorrected_volatile >= 0
        verdict = evaluate(sample, [], 0.0)
        assert verdict.health in (HEALTHY, DEGRADED, UNHEALTHY)
        assert (verdict.health == HEALTHY) == (verdict.reasons == ())


def test_mig_mode_matches_nvml(backend: RealNvml) -> None:
    for device in backend.devices():
        handle = pynvml.nvmlDeviceGetHandleByIndex(device.index)
        try:
            current = pynvml.nvmlDeviceGetMigMode(handle)[0]
        except pynvml.NVMLError_NotSupported:
            current = pynvml.NVML_DEVICE_MIG_DISABLE
        assert device.mig_enabled == (current == pynvml.NVML_DEVICE_MIG_ENABLE)
        if not device.mig_enabled:
            assert device.mig_instances == ()
        for instance in device.mig_instances:
            assert instance.uuid.startswith("MIG-")
            assert instance.size >= 0 and instance.start >= -1


def test_xid_event_set_is_set_up_and_torn_down() -> None:
    backend = RealNvml()
    try:
        uuids = {d.uuid for d in backend.devices()}
        assert backend.xid_watched, "no GPU accepted Xid event registration"
        assert backend.xid_watched <= uuids
        assert isinstance(backend.drain_xid_events(), list)
    finally:
        backend.close()
    backend.close()  # idempotent
