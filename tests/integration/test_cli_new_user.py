"""What a new user hit, as the CLI answers it now (issue 15, item 5)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from gpupool.v1 import admin_pb2, types_pb2
from scheduler.cli.main import cli, hoist_output_option
from tests.integration.conftest import Client
from tests.integration.test_allocate import allocate


def gpupool(client: Client, *args: str) -> tuple[int, str]:
    argv = hoist_output_option([*client.cli_args(), *args])
    result = CliRunner().invoke(cli, argv, env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_output_format_may_follow_the_subcommand() -> None:
    assert hoist_output_option(["nodes", "-o", "json"]) == ["--output", "json", "nodes"]
    assert hoist_output_option(["allocations", "--output=json", "--limit", "3"]) == [
        "--output", "json", "allocations", "--limit", "3",
    ]  # fmt: skip
    assert hoist_output_option(["gpus", "-ojson"]) == ["--output", "json", "gpus"]
    # Not an output format, or after "--": left alone.
    assert hoist_output_option(["certs", "issue-agent", "n", "--out", "json"]) == [
        "certs", "issue-agent", "n", "--out", "json",
    ]  # fmt: skip
    assert hoist_output_option(["x", "--", "-o", "json"]) == ["x", "--", "-o", "json"]


def test_json_after_the_subcommand_with_plain_enums_numbers_and_gpus(fleet_client: Client) -> None:
    code, out = gpupool(fleet_client, "nodes", "-o", "json")
    assert code == 0, out
    nodes = {n["name"]: n for n in json.loads(out)}
    h200 = nodes["h200"]
    assert h200["state"] == "ready"
    assert len(h200["gpus"]) == 8 and h200["gpus"][0]["health"] == "healthy"
    assert isinstance(h200["gpus"][0]["memory_mib"], int)


def test_allocation_show_and_list_by_request_id(fleet_client: Client) -> None:
    placed = allocate(fleet_client, "llama-70b", tenant="demo", whole=types_pb2.WholeGpus(count=4))
    code, out = gpupool(fleet_client, "allocation", "show", "llama-70b")
    assert code == 0 and placed.id in out and "llama-70b" in out
    code, out = gpupool(fleet_client, "-o", "json", "allocations", "--request-id", "llama-70b")
    assert code == 0 and [a["id"] for a in json.loads(out)] == [placed.id]
    allocate(fleet_client, "llama-70b", tenant="other", whole=types_pb2.WholeGpus(count=1))
    code, out = gpupool(fleet_client, "allocation", "show", "llama-70b")
    assert code == 1 and "used by tenants demo, other: add --tenant" in out
    code, out = gpupool(fleet_client, "allocation", "show", "llama-70b", "--tenant", "demo")
    assert code == 0 and placed.id in out
    code, out = gpupool(fleet_client, "allocation", "show", "nope")
    assert code == 1 and "no allocation with id or request id 'nope'" in out


def test_a_requeued_allocation_shows_no_old_placement_while_pending(fleet_client: Client) -> None:
    placed = allocate(fleet_client, "gang", whole=types_pb2.WholeGpus(count=8), gpu_models=["H200"])
    assert placed.bindings
    fleet_client.admin.DrainNode(admin_pb2.NodeActionRequest(name="h200"))
    code, out = gpupool(fleet_client, "-o", "json", "allocation", "show", placed.id)
    assert code == 0, out
    shown = json.loads(out)
    assert shown["state"] == "pending", "no other H200 node to move to"
    assert shown["bindings"] == []
    code, out = gpupool(fleet_client, "allocation", "show", placed.id)
    assert code == 0 and "Bindings" not in out and "h200:0" not in out


def test_messages_speak_cli_and_name_what_exists(fleet_client: Client) -> None:
    code, out = gpupool(fleet_client, "allocate", "--tenant", "t")
    assert code == 2 and "--whole, --fraction, --mig or --layout, or --serve MODEL" in out
    code, out = gpupool(fleet_client, "allocate", "--tenant", "t", "--serve", "llama-9000b")
    assert code == 1 and "not in the model catalogue (deepseek-v3, " in out
    assert "llama-3.1-70b" in out
    assert "--serve 70b" in out
    code, out = gpupool(fleet_client, "fault", "inject", "nosuchnode", "0", "xid=79")
    assert code == 1 and "no node named 'nosuchnode'" in out


def test_a_mig_profile_the_fleet_cannot_offer_is_an_error_naming_what_it_offers(
    fleet_client: Client,
) -> None:
    code, out = gpupool(fleet_client, "allocate", "--tenant", "t", "--mig", "3g.40gb")
    assert code == 3, out
    assert "no GPU of this fleet can ever hold it" in out
    assert "this fleet's MIG-mode GPUs offer A100-40GB: " in out and "3g.20gb" in out
    code, out = gpupool(fleet_client, "allocate", "--tenant", "t", "--mig", "3g.20gb")
    assert code == 0, out


def test_history_names_the_admin_who_released(fleet_client: Client) -> None:
    placed = allocate(fleet_client, "r", tenant="demo", whole=types_pb2.WholeGpus(count=1))
    code, out = gpupool(fleet_client, "release", placed.id)
    assert code == 0, out
    code, out = gpupool(fleet_client, "allocation", "show", placed.id)
    assert "released by admin test-admin" in out and "holder" not in out
