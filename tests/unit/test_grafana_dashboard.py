"""deploy/grafana/gpupool-dashboard.json queries only metrics gpupool serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.e2e.test_up_metrics import AGENT_METRICS, SCHEDULER_METRICS

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "gpupool-dashboard.json"
NAME = re.compile(r"\b(gpupool_[a-z_]+|DCGM_FI_[A-Z_]+)\b")
SUFFIXES = ("_bucket", "_sum", "_count", "_total")


def family(sample: str) -> str:
    for suffix in SUFFIXES:
        if sample.endswith(suffix):
            return sample.removesuffix(suffix)
    return sample


def test_every_query_names_a_served_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    served = SCHEDULER_METRICS | AGENT_METRICS | {"DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"}
    queried = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queried |= {family(n) for n in NAME.findall(target["expr"])}
    assert queried, "the dashboard queries nothing"
    assert queried <= served, sorted(queried - served)
    # Every GPU figure the agents serve has a panel.
    assert AGENT_METRICS - {"gpupool_worker_restarts"} <= queried | {"DCGM_FI_DEV_FB_FREE"}
