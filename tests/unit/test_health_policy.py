"""The health policy: every rule, its reason text, stickiness and configurable thresholds."""

from __future__ import annotations

import pytest

from agent.health import (
    DEGRADED,
    HEALTHY,
    UNHEALTHY,
    HealthThresholds,
    HealthVerdict,
    XidMemory,
    evaluate,
)
from agent.nvml.types import GpuSample, XidEvent

UUID = "GPU-11111111-2222-3333-4444-555555555555"
OTHER = "GPU-99999999-2222-3333-4444-555555555555"
NOW = 1_000_000.0


def healthy_sample(**figures: object) -> GpuSample:
    base: dict[str, object] = {
        "temperature_c": 40.0,
        "slowdown_temp_c": 90.0,
        "shutdown_temp_c": 95.0,
        "ecc_uncorrected_volatile": 0,
        "retired_pages_pending": False,
        "remapped_rows_pending": False,
        "remapped_rows_failure": False,
        "clock_event_reasons": 0,
        "power_mw": 70_000,
        "utilization_pct": 10,
        "memory_used_mib": 1024,
    }
    base.update(figures)
    return GpuSample(uuid=UUID, **base)  # type: ignore[arg-type]


def xid(number: int, at: float = NOW - 10, uuid: str = UUID) -> XidEvent:
    return XidEvent(uuid=uuid, xid=number, at=at)


def verdict(sample: GpuSample | None = None, *xids: XidEvent, **kw: object) -> HealthVerdict:
    thresholds = HealthThresholds(**kw)  # type: ignore[arg-type]
    return evaluate(sample or healthy_sample(), list(xids), NOW, thresholds)


def test_a_quiet_gpu_is_healthy_without_reasons() -> None:
    assert verdict() == HealthVerdict(HEALTHY, ())


def test_a_lost_gpu_is_unhealthy() -> None:
    result = verdict(GpuSample(uuid=UUID, lost=True))
    assert result.health == UNHEALTHY
    assert result.reasons == ("GPU is lost (NVML GPU_IS_LOST / fell off the bus)",)


def test_unsupported_figures_are_skipped() -> None:
    assert verdict(GpuSample(uuid=UUID)) == HealthVerdict(HEALTHY, ())
    hot_without_threshold = healthy_sample(temperature_c=120.0, slowdown_temp_c=None)
    assert verdict(hot_without_threshold).health == HEALTHY


@pytest.mark.parametrize("number", [13, 31, 43, 45, 68, 109])
def test_application_xids_never_affect_health(number: int) -> None:
    assert verdict(None, xid(number), xid(number)) == HealthVerdict(HEALTHY, ())


def test_xid_79_is_unhealthy_with_its_meaning() -> None:
    result = verdict(None, xid(79))
    assert result.health == UNHEALTHY
    assert result.reasons == ("Xid 79: GPU fell off the bus — reboot the machine",)


def test_xid_48_double_bit_ecc_is_unhealthy() -> None:
    result = verdict(None, xid(48))
    assert result.health == UNHEALTHY
    assert "Xid 48: double-bit ECC error" in result.reasons[0]


@pytest.mark.parametrize("number", [46, 62, 64, 74, 95, 119, 120, 140, 143])
def test_reset_class_xids_are_unhealthy(number: int) -> None:
    result = verdict(None, xid(number))
    assert result.health == UNHEALTHY
    assert result.reasons[0].startswith(f"Xid {number}: ")


def test_an_unlisted_xid_is_unhealthy() -> None:
    result = verdict(None, xid(999))
    assert result.health == UNHEALTHY
    assert result.reasons[0].startswith("Xid 999: critical GPU error")


@pytest.mark.parametrize("number", [63, 92, 137])
def test_ignored_xids_do_not_count(number: int) -> None:
    assert verdict(None, xid(number)) == HealthVerdict(HEALTHY, ())


def test_xid_94_contained_ecc_only_degrades() -> None:
    result = verdict(None, xid(94))
    assert result.health == DEGRADED
    assert "contained ECC error" in result.reasons[0]


def test_repeated_xids_give_one_reason_with_a_count() -> None:
    result = verdict(None, xid(79, NOW - 30), xid(79, NOW - 20), xid(13))
    assert result.reasons == ("Xid 79 (2 times): GPU fell off the bus — reboot the machine",)


def test_xids_of_other_gpus_and_old_xids_do_not_count() -> None:
    assert verdict(None, xid(79, uuid=OTHER)).health == HEALTHY
    assert verdict(None, xid(79, at=NOW - 3600)).health == HEALTHY
    assert verdict(None, xid(79, at=NOW - 3599)).health == UNHEALTHY


def test_uncorrectable_ecc_above_the_maximum_is_unhealthy() -> None:
    result = verdict(healthy_sample(ecc_uncorrected_volatile=2))
    assert result.health == UNHEALTHY
    assert result.reasons == (
        "2 uncorrectable ECC errors since the driver loaded (more than 0 allowed)",
    )
    assert verdict(healthy_sample(ecc_uncorrected_volatile=2), ecc_uncorrected_max=2).health == (
        HEALTHY
    )


def test_retired_pages_pending_and_remap_failure_are_unhealthy() -> None:
    retired = verdict(healthy_sample(retired_pages_pending=True))
    assert retired.health == UNHEALTHY
    assert "retired memory pages pending" in retired.reasons[0]
    failed = verdict(healthy_sample(remapped_rows_failure=True))
    assert failed.health == UNHEALTHY
    assert "row remapping failed" in failed.reasons[0]


def test_remapped_rows_pending_degrades() -> None:
    result = verdict(healthy_sample(remapped_rows_pending=True))
    assert result.health == DEGRADED
    assert "remapped rows pending" in result.reasons[0]


@pytest.mark.parametrize(
    ("bits", "name"),
    [(0x8, "HwSlowdown"), (0x40, "HwThermalSlowdown"), (0x80, "HwPowerBrakeSlowdown")],
)
def test_hardware_slowdown_bits_are_unhealthy(bits: int, name: str) -> None:
    result = verdict(healthy_sample(clock_event_reasons=bits | 0x1))
    assert result.health == UNHEALTHY
    assert name in result.reasons[0]
    assert f"{bits | 0x1:#x}" in result.reasons[0]


def test_software_thermal_slowdown_degrades_and_power_cap_does_not() -> None:
    result = verdict(healthy_sample(clock_event_reasons=0x20))
    assert result.health == DEGRADED
    assert result.reasons == ("software thermal slowdown (clock event reasons 0x20)",)
    assert verdict(healthy_sample(clock_event_reasons=0x4)).health == HEALTHY


def test_temperature_against_the_devices_own_slowdown_threshold() -> None:
    at = verdict(healthy_sample(temperature_c=87.0, slowdown_temp_c=87.0))
    assert at.health == UNHEALTHY
    assert at.reasons == ("temperature 87 °C at or above its slowdown threshold 87 °C",)
    near = verdict(healthy_sample(temperature_c=83.0, slowdown_temp_c=87.0))
    assert near.health == DEGRADED
    assert near.reasons == ("temperature 83 °C within 5 °C of its slowdown threshold 87 °C",)
    assert verdict(healthy_sample(temperature_c=81.0, slowdown_temp_c=87.0)).health == HEALTHY


def test_the_temperature_margin_is_configurable() -> None:
    sample = healthy_sample(temperature_c=81.0, slowdown_temp_c=87.0)
    assert verdict(sample, temperature_margin_c=10.0).health == DEGRADED


def test_xid_sets_are_configurable() -> None:
    assert verdict(None, xid(79), ignored_xids=frozenset({79})).health == HEALTHY
    assert verdict(None, xid(13), application_xids=frozenset()).health == UNHEALTHY
    assert verdict(None, xid(48), degrading_xids=frozenset({48})).health == DEGRADED


def test_the_worst_finding_wins_and_every_reason_is_kept() -> None:
    sample = healthy_sample(remapped_rows_pending=True, ecc_uncorrected_volatile=1)
    result = verdict(sample, xid(94))
    assert result.health == UNHEALTHY
    assert len(result.reasons) == 3


def test_xid_memory_keeps_a_critical_xid_sticky_until_it_ages_out() -> None:
    memory = XidMemory(memory_s=600.0)
    memory.add([xid(79, at=NOW), xid(13, at=NOW), xid(48, at=NOW, uuid=OTHER)])
    thresholds = HealthThresholds(xid_memory_s=600.0)
    for later in (0.0, 60.0, 599.0):
        recent = memory.recent(UUID, NOW + later)
        assert [e.xid for e in recent] == [79, 13]  # application Xids are kept, just not counted
        assert evaluate(healthy_sample(), recent, NOW + later, thresholds).health == UNHEALTHY
    assert memory.recent(UUID, NOW + 600.0) == []
    assert evaluate(healthy_sample(), [], NOW + 600.0, thresholds).health == HEALTHY
    assert [e.xid for e in memory.recent(OTHER, NOW)] == [48]


def test_xid_memory_clear_forgets_one_gpu() -> None:
    memory = XidMemory()
    memory.add([xid(79), xid(79, uuid=OTHER)])
    memory.clear(UUID)
    memory.clear("GPU-unknown")
    assert memory.recent(UUID, NOW) == []
    assert len(memory.recent(OTHER, NOW)) == 1
