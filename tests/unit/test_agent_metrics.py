"""The agent's GPU metrics: dcgm-exporter's names and labels, figures a GPU
does not support left out, Xids and faults as the health reports see them."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.metrics import AgentGpuCollector, agent_registry
from agent.nvml import GpuSample, SimulatedNvml, XidEvent

FLEET = Path(__file__).resolve().parents[2] / "deploy" / "fleets" / "mixed.yaml"


def scrape(collector: AgentGpuCollector) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = generate_latest(agent_registry(collector)).decode()
    return {
        f.name: [(s.labels, s.value) for s in f.samples]
        for f in text_string_to_metric_families(text)
    }


class NoEcc(SimulatedNvml):
    """A GPU that answers NOT_SUPPORTED for ECC and power (e.g. a consumer part)."""

    def sample(self, uuid: str) -> GpuSample:
        return replace(super().sample(uuid), ecc_uncorrected_volatile=None, power_mw=None)


def test_names_labels_and_values_follow_dcgm_exporter() -> None:
    backend = SimulatedNvml.from_fleet_file(FLEET, "h100-sxm-0")
    uuid = backend.devices()[3].uuid
    xids = {uuid: [XidEvent(uuid, 79, time.time())]}
    collector = AgentGpuCollector(backend, "h100-sxm-0", lambda u: xids.get(u, []), lambda: 2)
    backend.inject(3, "temperature=95")
    metrics = scrape(collector)
    temps = {labels["gpu"]: (labels, value) for labels, value in metrics["DCGM_FI_DEV_GPU_TEMP"]}
    assert len(temps) == 8
    labels, value = temps["3"]
    assert labels == {
        "gpu": "3",
        "UUID": uuid,
        "device": "nvidia3",
        "modelName": backend.devices()[3].name,
        "Hostname": "h100-sxm-0",
    }
    assert value == 95
    used = {lb["gpu"]: v for lb, v in metrics["DCGM_FI_DEV_FB_USED"]}
    free = {lb["gpu"]: v for lb, v in metrics["DCGM_FI_DEV_FB_FREE"]}
    assert used["0"] + free["0"] == backend.devices()[0].memory_mib
    last_xid = {lb["gpu"]: v for lb, v in metrics["DCGM_FI_DEV_XID_ERRORS"]}
    assert last_xid["3"] == 79 and last_xid["0"] == 0
    assert metrics["gpupool_worker_restarts"][0][1] == 2


def test_a_figure_the_gpu_does_not_report_is_left_out() -> None:
    backend = NoEcc(SimulatedNvml.from_fleet_file(FLEET, "l4").node)
    metrics = scrape(AgentGpuCollector(backend, "l4", lambda u: [], lambda: 0))
    assert (
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL" not in metrics
        or not metrics["DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"]
    )
    assert not metrics.get("DCGM_FI_DEV_POWER_USAGE")
    assert len(metrics["DCGM_FI_DEV_GPU_UTIL"]) == 2
