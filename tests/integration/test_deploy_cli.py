"""`gpupool deploy …` against a real scheduler: create, get (replicas with
their engines' metrics), list, scale, pause, history, delete, bad input."""

from __future__ import annotations

import json

from click.testing import CliRunner

from scheduler.app import SchedulerApp
from scheduler.cli.main import cli
from scheduler.domain.callers import SYSTEM
from scheduler.store.deployments import EngineSample
from tests.integration.conftest import Client
from tests.integration.test_deploy_api import _no_deployments  # noqa: F401  (autouse)


def gpupool(client: Client, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [*client.cli_args(), *args], env={"COLUMNS": "220"})
    return result.exit_code, result.output


def test_deploy_commands(fleet_client: Client, app: SchedulerApp) -> None:
    code, out = gpupool(
        fleet_client,
        "deploy", "create", "chat", "--tenant", "team-a", "--model", "llama-3.1-8b",
        "--variant", "fp16:H100-80GB,H200", "--variant", "int4:A100-80GB",
        "--min", "1", "--max", "4", "--standby", "1", "--cron", "0 9 * * 1-5=3",
        "--scale-up", "30/2/60",
    )  # fmt: skip
    assert code == 0, out
    assert "team-a/chat: llama-3.1-8b on sim-engine (active)" in out
    assert "scale up: 30 s, +2 per 60 s; down: 300 s, -1 per 300 s" in out
    assert "'0 9 * * 1-5' → 3" in out

    app.deployment_loop.run_once()
    deployment = app.deployments.get(SYSTEM, "chat", "team-a")
    serving = deployment.replicas[0]
    app.deployments.record_metrics(
        serving["node"], [EngineSample(serving["allocation_id"], 0.42, 3, 1, 1234, 5678)]
    )
    code, out = gpupool(fleet_client, "deploy", "get", "chat", "--tenant", "team-a")
    assert code == 0, out
    assert "42%" in out and "1,234" in out and "5,678" in out
    assert "H100-80GB" in out and "starting" in out

    code, out = gpupool(fleet_client, "-o", "json", "deploy", "list")
    listed = json.loads(out)
    assert [d["spec"]["name"] for d in listed] == ["chat"]

    code, out = gpupool(
        fleet_client, "deploy", "scale", "chat", "--tenant", "team-a", "--replicas", "2"
    )
    assert code == 0 and "manual" in out, out
    code, out = gpupool(fleet_client, "deploy", "pause", "chat", "--tenant", "team-a")
    assert code == 0 and "paused" in out, out
    code, out = gpupool(fleet_client, "deploy", "resume", "chat", "--tenant", "team-a")
    assert code == 0, out
    code, out = gpupool(fleet_client, "deploy", "history", "chat", "--tenant", "team-a")
    assert code == 0, out
    for kind in ("created", "decision", "replica", "scaled", "paused", "resumed"):
        assert kind in out, (kind, out)

    code, out = gpupool(fleet_client, "deploy", "delete", "chat", "--tenant", "team-a")
    assert code == 0 and "deleting" in out, out


def test_bad_input_is_one_error_line(fleet_client: Client) -> None:
    code, out = gpupool(
        fleet_client, "deploy", "create", "chat", "--tenant", "team-a",
        "--model", "llama-3.1-8b", "--min", "3", "--max", "2",
    )  # fmt: skip
    assert code == 1 and "min_replicas 3 is greater than max_replicas 2" in out, out
    code, out = gpupool(
        fleet_client, "deploy", "create", "chat", "--tenant", "team-a",
        "--model", "llama-3.1-8b", "--target-kv", "1.5",
    )  # fmt: skip
    assert code == 1 and "target_kv_cache_usage must be in (0, 1]" in out, out
    code, out = gpupool(fleet_client, "deploy", "get", "nope", "--tenant", "team-a")
    assert code == 1 and "error: no deployment named 'nope'" in out, out
