"""The `gpupool` CLI against a real scheduler: tables, JSON and errors."""

from __future__ import annotations

import json

from click.testing import CliRunner
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from scheduler.cli.main import cli
from tests.integration.conftest import Client


def gpupool(client: Client, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [*client.cli_args(), *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_nodes_gpus_and_node_show(fleet_client: Client) -> None:
    code, out = gpupool(fleet_client, "nodes")
    assert code == 0 and "a100-40-mig" in out and "8× H100-80GB" in out
    code, out = gpupool(fleet_client, "-o", "json", "gpus", "--node", "a100-40-mig")
    gpus = json.loads(out)
    assert code == 0 and len(gpus) == 4 and all(g["mig_enabled"] for g in gpus)
    gpupool(
        fleet_client,
        "allocate",
        "--tenant",
        "t",
        "--request-id",
        "r",
        "--whole",
        "2",
        "--gpu-model",
        "H200",
    )
    code, out = gpupool(fleet_client, "node", "show", "h200")
    assert code == 0
    assert "NVLink peers: 1,2,3,4,5,6,7" in out, "topology"
    assert "Allocations" in out and "2× whole" in out


def test_allocate_show_release_and_json(fleet_client: Client) -> None:
    code, out = gpupool(
        fleet_client,
        "-o",
        "json",
        "allocate",
        "--tenant",
        "t",
        "--request-id",
        "m",
        "--mig",
        "3g.20gb",
    )
    allocation = json.loads(out)
    assert code == 0 and allocation["state"] == "placed"
    code, out = gpupool(fleet_client, "allocation", "show", allocation["id"])
    assert code == 0 and "3g.20gb" in out and "History" in out
    code, out = gpupool(
        fleet_client, "-o", "json", "allocations", "--tenant", "t", "--state", "placed"
    )
    assert [a["id"] for a in json.loads(out)] == [allocation["id"]]
    code, out = gpupool(fleet_client, "release", allocation["id"])
    assert code == 0 and "released" in out


def test_pending_allocation_shows_its_reasons(fleet_client: Client) -> None:
    code, out = gpupool(
        fleet_client, "allocate", "--tenant", "t", "--request-id", "big", "--whole", "16"
    )
    # Stored, but it can never be placed: exit 3 (see test_cli_new_user).
    assert code == 3 and "UNSCHEDULABLE" in out and "no node has 16 GPUs" in out


def test_cordon_uncordon_drain(fleet_client: Client) -> None:
    assert "cordoned" in gpupool(fleet_client, "cordon", "l4")[1]
    assert "ready" in gpupool(fleet_client, "uncordon", "l4")[1]
    assert "drained" in gpupool(fleet_client, "drain", "l4")[1]


def test_unknown_ids_are_one_line_errors(fleet_client: Client) -> None:
    for args in (("allocation", "show", "a-nope"), ("release", "a-nope"), ("cordon", "ghost")):
        code, out = gpupool(fleet_client, *args)
        assert code == 1
        assert out.strip().count("\n") == 0 and out.startswith("error: ")


def test_reflection_lists_the_services(client: Client) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    response = next(iter(stub.ServerReflectionInfo(iter([request]))))
    names = {s.name for s in response.list_services_response.service}
    assert {
        "gpupool.v1.Scheduler",
        "gpupool.v1.Admin",
        "gpupool.v1.Agents",
        "grpc.health.v1.Health",
    } <= names


def test_allocate_with_a_layout_and_with_a_model_to_serve(fleet_client: Client) -> None:
    code, out = gpupool(
        fleet_client,
        "allocate",
        "--tenant",
        "t",
        "--layout",
        "tp=8,pp=2",
        "--gpu-model",
        "H100-80GB",
    )
    assert code == 0, out
    assert "16× whole (tp=8 pp=2)" in out
    assert "h100-sxm-0:0,1,2,3,4,5,6,7 h100-sxm-1:0,1,2,3,4,5,6,7" in out
    code, out = gpupool(
        fleet_client, "allocate", "--tenant", "t", "--serve", "llama-3.1-8b", "--context", "8192"
    )
    assert code == 0, out
    assert "workload class inferred as small-model" in out
    # The fleet's A100-40GBs are in MIG mode: the cheapest other part that fits.
    assert "chose L4 tp=1" in out
    code, out = gpupool(fleet_client, "allocate", "--tenant", "t", "--layout", "tp=x")
    assert code != 0 and "is not DEGREE=N" in out


def test_allocate_with_a_worker_template(fleet_client: Client) -> None:
    code, out = gpupool(
        fleet_client, "-o", "json", "allocate", "--tenant", "t", "--whole", "1",
        "--worker", "python", "--arg", "script=/opt/gpupool/workers/serve.py",
        "--env", "LOG_LEVEL=debug",
    )  # fmt: skip
    assert code == 0, out
    allocation = json.loads(out)
    assert allocation["worker"] == {
        "template": "python",
        "args": {"script": "/opt/gpupool/workers/serve.py"},
        "env": {"LOG_LEVEL": "debug"},
    }
    code, out = gpupool(
        fleet_client, "allocate", "--tenant", "t", "--whole", "1", "--worker", "nope"
    )
    assert code != 0 and "nope" in out
    code, out = gpupool(fleet_client, "allocate", "--tenant", "t", "--whole", "1", "--arg", "a=b")
    assert code != 0 and "--arg and --env need --worker TEMPLATE" in out
