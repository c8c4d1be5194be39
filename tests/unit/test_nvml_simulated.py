"""The simulated NVML backend: devices from the mixed fleet file, and injected faults."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.health import DEGRADED, HEALTHY, UNHEALTHY, evaluate
from agent.nvml import CLOCK_EVENT_HW_SLOWDOWN, NvmlBackend, SimulatedNvml
from scheduler.fleetfile import gpu_uuid

FLEET = Path(__file__).resolve().parents[2] / "deploy" / "fleets" / "mixed.yaml"


@pytest.fixture
def h100() -> SimulatedNvml:
    return SimulatedNvml.from_fleet_file(FLEET, "h100-sxm-0")


@pytest.fixture
def a100_mig() -> SimulatedNvml:
    return SimulatedNvml.from_fleet_file(FLEET, "a100-40-mig")


def test_it_is_an_nvml_backend(h100: SimulatedNvml) -> None:
    backend: NvmlBackend = h100
    assert backend.simulated is True
    backend.close()


def test_h100_node_devices_have_nvlink_peers(h100: SimulatedNvml) -> None:
    devices = h100.devices()
    assert [d.index for d in devices] == list(range(8))
    first = devices[0]
    assert first.uuid == gpu_uuid("h100-sxm-0", 0)
    assert first.name == "NVIDIA H100 80GB HBM3"
    assert first.model == "H100-80GB"
    assert first.memory_mib == 80 * 1024
    assert not first.mig_enabled
    assert first.mig_instances == ()
    assert first.nvlink_peers == (1, 2, 3, 4, 5, 6, 7)
    assert first.pci_bus_id == "00000000:18:00.0"


def test_mig_node_devices_are_in_mig_mode(a100_mig: SimulatedNvml) -> None:
    devices = a100_mig.devices()
    assert len(devices) == 4
    assert all(d.mig_enabled and d.model == "A100-40GB" for d in devices)
    assert devices[0].name == "NVIDIA A100-SXM4-40GB"
    assert devices[0].mig_instances == ()


def test_an_unknown_node_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"no node 'nope'.*h100-sxm-0"):
        SimulatedNvml.from_fleet_file(FLEET, "nope")


def test_a_quiet_gpu_samples_healthy(h100: SimulatedNvml) -> None:
    uuid = gpu_uuid("h100-sxm-0", 3)
    sample = h100.sample(uuid)
    assert sample.uuid == uuid and not sample.lost
    assert sample.retired_pages_pending is None  # Ampere and later: NOT_SUPPORTED
    assert sample.remapped_rows_pending is False
    assert sample.utilization_pct == 0
    assert evaluate(sample, [], 0.0).health == HEALTHY
    with pytest.raises(KeyError):
        h100.sample("GPU-unknown")


def test_mig_gpus_have_no_remapped_rows_or_utilization(a100_mig: SimulatedNvml) -> None:
    sample = a100_mig.sample(gpu_uuid("a100-40-mig", 0))
    assert sample.remapped_rows_pending is None
    assert sample.remapped_rows_failure is None
    assert sample.utilization_pct is None
    a100_mig.inject(0, "remap_failure")
    assert a100_mig.sample(gpu_uuid("a100-40-mig", 0)).remapped_rows_failure is True


def test_xid_events_are_drained_once(h100: SimulatedNvml) -> None:
    h100.inject(2, "xid=79")
    h100.inject(2, "xid=13")
    events = h100.drain_xid_events()
    assert [(e.uuid, e.xid) for e in events] == [
        (gpu_uuid("h100-sxm-0", 2), 79),
        (gpu_uuid("h100-sxm-0", 2), 13),
    ]
    assert h100.drain_xid_events() == []


def test_clearing_xids_drops_undrained_ones(h100: SimulatedNvml) -> None:
    h100.inject(1, "xid=48")
    h100.inject(2, "xid=48")
    h100.clear(1, "xid")
    assert [e.uuid for e in h100.drain_xid_events()] == [gpu_uuid("h100-sxm-0", 2)]


@pytest.mark.parametrize(
    ("fault", "figure", "value", "health"),
    [
        ("temperature=95", "temperature_c", 95.0, UNHEALTHY),
        ("temperature=87.5", "temperature_c", 87.5, DEGRADED),
        ("ecc=2", "ecc_uncorrected_volatile", 2, UNHEALTHY),
        ("lost", "lost", True, UNHEALTHY),
        ("slowdown", "clock_event_reasons", CLOCK_EVENT_HW_SLOWDOWN, UNHEALTHY),
        ("remap_failure", "remapped_rows_failure", True, UNHEALTHY),
        ("remap_pending", "remapped_rows_pending", True, DEGRADED),
        ("retired_pending", "retired_pages_pending", True, UNHEALTHY),
    ],
)
def test_each_fault_shows_in_samples_until_cleared(
    h100: SimulatedNvml, fault: str, figure: str, value: object, health: str
) -> None:
    uuid = gpu_uuid("h100-sxm-0", 5)
    before = getattr(h100.sample(uuid), figure)
    h100.inject(5, fault)
    sample = h100.sample(uuid)
    assert getattr(sample, figure) == value
    assert evaluate(sample, [], 0.0).health == health
    assert evaluate(h100.sample(gpu_uuid("h100-sxm-0", 4)), [], 0.0).health == HEALTHY
    h100.clear(5, fault.partition("=")[0])
    assert getattr(h100.sample(uuid), figure) == before


def test_clear_without_a_kind_clears_every_fault(h100: SimulatedNvml) -> None:
    uuid = gpu_uuid("h100-sxm-0", 0)
    for fault in ("temperature=99", "ecc=1", "slowdown", "xid=79"):
        h100.inject(0, fault)
    h100.clear(0)
    assert evaluate(h100.sample(uuid), [], 0.0).health == HEALTHY
    assert h100.drain_xid_events() == []


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("melted", "unknown fault 'melted'"),
        ("xid", "xid needs an integer"),
        ("xid=abc", "xid needs an integer"),
        ("xid=0", "out of range"),
        ("ecc=-1", "out of range"),
        ("temperature=hot", "temperature needs a number"),
        ("temperature=nan", "out of range"),
        ("lost=1", "takes no value"),
    ],
)
def test_bad_fault_text_is_a_clear_value_error(
    h100: SimulatedNvml, fault: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        h100.inject(0, fault)


def test_an_unknown_gpu_or_clear_kind_is_a_value_error(h100: SimulatedNvml) -> None:
    with pytest.raises(ValueError, match=r"no GPU 8 on node h100-sxm-0 \(GPUs: 0, 1"):
        h100.inject(8, "lost")
    with pytest.raises(ValueError, match="no GPU 8"):
        h100.clear(8)
    with pytest.raises(ValueError, match="unknown fault 'melted'"):
        h100.clear(0, "melted")


def test_mig_instances_are_created_and_destroyed_in_memory(a100_mig: SimulatedNvml) -> None:
    big = a100_mig.create_mig_instance(1, "4g.20gb")
    small = a100_mig.create_mig_instance(1, "1g.5gb")
    assert (big.profile, big.start, big.size) == ("4g.20gb", 0, 4)
    assert (small.start, small.size) == (4, 1)
    assert big.uuid.startswith("MIG-") and big.uuid != small.uuid
    assert a100_mig.devices()[1].mig_instances == (big, small)
    with pytest.raises(ValueError, match="overlaps"):
        a100_mig.create_mig_instance(1, "3g.20gb", start=4)
    with pytest.raises(ValueError, match="does not exist on A100-40GB"):
        a100_mig.create_mig_instance(1, "3g.40gb")
    a100_mig.destroy_mig_instance(1, big.uuid)
    assert a100_mig.devices()[1].mig_instances == (small,)
    with pytest.raises(ValueError, match="no MIG device"):
        a100_mig.destroy_mig_instance(1, big.uuid)


def test_mig_instances_need_mig_mode(h100: SimulatedNvml) -> None:
    with pytest.raises(ValueError, match="not in MIG mode"):
        h100.create_mig_instance(0, "1g.10gb")
