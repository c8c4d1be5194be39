"""The health policy: one GPU's sample and recent Xids in, a verdict with human reasons out.

Pure: no NVML and no clock of its own. Xids follow NVIDIA's Kubernetes device
plugin (application Xids never make a GPU unhealthy, every other Xid does),
refined by NVIDIA's Xid catalogue (../shared/gpus.md): a few Xids are ignored
and a contained ECC error only degrades. Figures a GPU does not report (None)
are skipped, never a reason.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.nvml.types import (
    CLOCK_EVENT_HW_POWER_BRAKE_SLOWDOWN,
    CLOCK_EVENT_HW_SLOWDOWN,
    CLOCK_EVENT_HW_THERMAL_SLOWDOWN,
    CLOCK_EVENT_SW_THERMAL_SLOWDOWN,
    GpuSample,
    XidEvent,
)

HEALTHY = "healthy"
DEGRADED = "degraded"
UNHEALTHY = "unhealthy"
_SEVERITY = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}

_RESET = "reset the GPU"
XID_MEANINGS: dict[int, str] = {
    46: f"GPU stopped processing — {_RESET}",
    48: "double-bit ECC error — reset the GPU or reboot the node",
    62: f"internal micro-controller halt — {_RESET}",
    64: f"ECC page retirement or row remapping recording failure — {_RESET}",
    74: "NVLink error — reset the GPU or reboot the node",
    79: "GPU fell off the bus — reboot the machine",
    94: "contained ECC error — restart the application, reset the GPU when convenient",
    95: f"uncontained ECC error — {_RESET}",
    119: f"GSP RPC timeout — {_RESET}",
    120: f"GSP error — {_RESET}",
    140: f"critical GPU error — {_RESET}",
    143: f"critical GPU error — {_RESET}",
}
_UNLISTED_XID = "critical GPU error (not an application error) — the GPU needs attention"

_HW_SLOWDOWN_BITS = {
    CLOCK_EVENT_HW_SLOWDOWN: "HwSlowdown",
    CLOCK_EVENT_HW_THERMAL_SLOWDOWN: "HwThermalSlowdown",
    CLOCK_EVENT_HW_POWER_BRAKE_SLOWDOWN: "HwPowerBrakeSlowdown",
}
_XIDS_KEPT_PER_GPU = 256  # an application Xid storm must not grow memory without bound


@dataclass(frozen=True)
class HealthThresholds:
    temperature_margin_c: float = 5.0  # degraded within this margin below the slowdown threshold
    ecc_uncorrected_max: int = 0  # more volatile uncorrectable ECC errors than this: unhealthy
    xid_memory_s: float = 3600.0  # how long a critical Xid keeps the GPU unhealthy
    application_xids: frozenset[int] = frozenset({13, 31, 43, 45, 68, 109})
    ignored_xids: frozenset[int] = frozenset({63, 92, 137})  # 63 row remap event: track only
    degrading_xids: frozenset[int] = frozenset({94})  # contained ECC error


DEFAULT_THRESHOLDS = HealthThresholds()


@dataclass(frozen=True)
class HealthVerdict:
    health: str  # HEALTHY | DEGRADED | UNHEALTHY
    reasons: tuple[str, ...]


def evaluate(
    sample: GpuSample,
    recent_xids: Sequence[XidEvent],
    now: float,
    thresholds: HealthThresholds = DEFAULT_THRESHOLDS,
) -> HealthVerdict:
    """The verdict for one GPU: the worst of every rule that fires, with each rule's reason.

    Xids of other GPUs and Xids older than `thresholds.xid_memory_s` are not counted.
    """
    if sample.lost:
        return HealthVerdict(UNHEALTHY, ("GPU is lost (NVML GPU_IS_LOST / fell off the bus)",))
    findings: list[tuple[str, str]] = []
    findings += _xid_findings(sample.uuid, recent_xids, now, thresholds)
    findings += _memory_findings(sample, thresholds)
    findings += _clock_findings(sample.clock_event_reasons)
    findings += _temperature_findings(sample, thresholds)
    if not findings:
        return HealthVerdict(HEALTHY, ())
    worst = max((health for health, _ in findings), key=_SEVERITY.__getitem__)
    return HealthVerdict(worst, tuple(reason for _, reason in findings))


def _xid_findings(
    uuid: str, events: Sequence[XidEvent], now: float, thresholds: HealthThresholds
) -> list[tuple[str, str]]:
    counts: dict[int, int] = {}
    for event in events:
        if event.uuid == uuid and now - event.at < thresholds.xid_memory_s:
            counts[event.xid] = counts.get(event.xid, 0) + 1
    findings: list[tuple[str, str]] = []
    for xid, count in counts.items():
        if xid in thresholds.application_xids or xid in thresholds.ignored_xids:
            continue  # the application's business, or tracked only
        health = DEGRADED if xid in thresholds.degrading_xids else UNHEALTHY
        times = f" ({count} times)" if count > 1 else ""
        findings.append((health, f"Xid {xid}{times}: {XID_MEANINGS.get(xid, _UNLISTED_XID)}"))
    return findings


def _memory_findings(sample: GpuSample, thresholds: HealthThresholds) -> list[tuple[str, str]]:
    findings: list[tuple[str, str]] = []
    ecc = sample.ecc_uncorrected_volatile
    if ecc is not None and ecc > thresholds.ecc_uncorrected_max:
        findings.append(
            (
                UNHEALTHY,
                f"{ecc} uncorrectable ECC errors since the driver loaded "
                f"(more than {thresholds.ecc_uncorrected_max} allowed)",
            )
        )
    if sample.retired_pages_pending:
        findings.append((UNHEALTHY, "retired memory pages pending — reset the GPU to retire them"))
    if sample.remapped_rows_failure:
        findings.append((UNHEALTHY, "row remapping failed — the GPU needs service"))
    if sample.remapped_rows_pending:
        findings.append((DEGRADED, "remapped rows pending — reset the GPU when convenient"))
    return findings


def _clock_findings(reasons: int | None) -> list[tuple[str, str]]:
    if reasons is None:
        return []
    findings: list[tuple[str, str]] = []
    hardware = [name for bit, name in _HW_SLOWDOWN_BITS.items() if reasons & bit]
    if hardware:
        findings.append(
            (
                UNHEALTHY,
                f"hardware slowdown ({', '.join(hardware)}; clock event reasons "
                f"{reasons:#x}): clocks cut by half or more",
            )
        )
    if reasons & CLOCK_EVENT_SW_THERMAL_SLOWDOWN:
        findings.append((DEGRADED, f"software thermal slowdown (clock event reasons {reasons:#x})"))
    return findings


def _temperature_findings(sample: GpuSample, thresholds: HealthThresholds) -> list[tuple[str, str]]:
    temperature, slowdown = sample.temperature_c, sample.slowdown_temp_c
    if temperature is None or slowdown is None:
        return []
    if temperature >= slowdown:
        return [
            (
                UNHEALTHY,
                f"temperature {temperature:g} °C at or above "
                f"its slowdown threshold {slowdown:g} °C",
            )
        ]
    if temperature >= slowdown - thresholds.temperature_margin_c:
        return [
            (
                DEGRADED,
                f"temperature {temperature:g} °C within {thresholds.temperature_margin_c:g} °C "
                f"of its slowdown threshold {slowdown:g} °C",
            )
        ]
    return []


class XidMemory:
    """Recent Xids per GPU, so that a critical Xid keeps its GPU unhealthy for a while."""

    def __init__(self, memory_s: float = DEFAULT_THRESHOLDS.xid_memory_s) -> None:
        self.memory_s = memory_s
        self._events: dict[str, deque[XidEvent]] = {}

    def add(self, events: Iterable[XidEvent]) -> None:
        for event in events:
            kept = self._events.setdefault(event.uuid, deque(maxlen=_XIDS_KEPT_PER_GPU))
            kept.append(event)

    def recent(self, uuid: str, now: float) -> list[XidEvent]:
        """This GPU's Xids of the last `memory_s` seconds, oldest first; older ones are dropped."""
        kept = self._events.get(uuid)
        if kept is None:
            return []
        fresh = [event for event in kept if now - event.at < self.memory_s]
        if len(fresh) < len(kept):
            kept.clear()
            kept.extend(fresh)
        return fresh

    def peek(self, uuid: str, now: float) -> list[XidEvent]:
        """Like recent(), without dropping anything: safe from another thread
        (the metrics scrape) while the agent adds events."""
        kept = list(self._events.get(uuid, ()))  # one C-level copy: no iteration race
        return [event for event in kept if now - event.at < self.memory_s]

    def clear(self, uuid: str) -> None:
        """Forget this GPU's Xids, e.g. after an operator reset it."""
        self._events.pop(uuid, None)
