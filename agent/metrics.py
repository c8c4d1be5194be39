"""The agent's Prometheus metrics: per-GPU figures from NVML under the names
and labels of NVIDIA's dcgm-exporter, read when scraped.

A scrape samples every GPU through the same backend the health reports use
(real NVML or the simulator), so dashboards built for dcgm-exporter work on
gpupool nodes unchanged. Labels as dcgm-exporter sets them: `gpu` (index),
`UUID`, `device` (nvidiaN), `modelName` (NVML's name) and `Hostname`.
A figure the GPU does not support is left out for that GPU, as
dcgm-exporter does, rather than reported as 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.nvml.types import GpuSample, NvmlBackend, XidEvent

LABELS = ["gpu", "UUID", "device", "modelName", "Hostname"]

# (name, help, how to read it from a sample and the device's memory in MiB)
_Reading = Callable[[GpuSample, int], float | None]
_GAUGES: tuple[tuple[str, str, _Reading], ...] = (
    ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", lambda s, m: s.utilization_pct),
    ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", lambda s, m: s.memory_used_mib),
    (
        "DCGM_FI_DEV_FB_FREE",
        "Framebuffer memory free (in MiB).",
        lambda s, m: None if s.memory_used_mib is None else max(0, m - s.memory_used_mib),
    ),
    ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", lambda s, m: s.temperature_c),
    (
        "DCGM_FI_DEV_POWER_USAGE",
        "Power draw (in W).",
        lambda s, m: None if s.power_mw is None else s.power_mw / 1000,
    ),
    (
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "Total number of double-bit (uncorrectable) volatile ECC errors.",
        lambda s, m: s.ecc_uncorrected_volatile,
    ),
    (
        "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
        "Current clock event (throttle) reasons, a bitmask.",
        lambda s, m: s.clock_event_reasons,
    ),
)


class AgentGpuCollector(Collector):
    def __init__(
        self,
        backend: NvmlBackend,
        hostname: str,
        recent_xids: Callable[[str], Sequence[XidEvent]],
        worker_restarts: Callable[[], int],
    ) -> None:
        self._backend = backend
        self._hostname = hostname
        self._recent_xids = recent_xids
        self._worker_restarts = worker_restarts

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        families = {name: GaugeMetricFamily(name, doc, labels=LABELS) for name, doc, _ in _GAUGES}
        xid = GaugeMetricFamily(
            "DCGM_FI_DEV_XID_ERRORS",
            "Value of the last XID error encountered (0: none in the agent's memory window).",
            labels=LABELS,
        )
        xid_count = GaugeMetricFamily(
            "gpupool_gpu_recent_xids",
            "Xid events of this GPU within the agent's memory window.",
            labels=LABELS,
        )
        lost = GaugeMetricFamily(
            "gpupool_gpu_lost", "1 if NVML reports the GPU lost (fell off the bus).", labels=LABELS
        )
        for device in self._backend.devices():
            labels = [
                str(device.index),
                device.uuid,
                f"nvidia{device.index}",
                device.name,
                self._hostname,
            ]
            sample = self._backend.sample(device.uuid)
            for name, _, read in _GAUGES:
                value = read(sample, device.memory_mib)
                if value is not None:
                    families[name].add_metric(labels, float(value))
            recent = self._recent_xids(device.uuid)
            xid.add_metric(labels, float(recent[-1].xid) if recent else 0.0)
            xid_count.add_metric(labels, float(len(recent)))
            lost.add_metric(labels, 1.0 if sample.lost else 0.0)
        yield from families.values()
        yield xid
        yield xid_count
        yield lost
        yield CounterMetricFamily(
            "gpupool_worker_restarts",
            "Worker gangs this agent restarted after a failure, since it started.",
            value=self._worker_restarts(),
        )


def agent_registry(collector: AgentGpuCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
