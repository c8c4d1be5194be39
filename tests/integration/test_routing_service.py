"""The gRPC Router service over real TLS on loopback: Route, Complete, Explain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner

from gpupool.v1 import router_pb2 as pb
from gpupool.v1 import router_pb2_grpc
from scheduler.app import SchedulerApp
from scheduler.cli.main import cli
from scheduler.domain.callers import Role
from scheduler.gateway.replicas import ReplicaUpdate, Synced
from scheduler.security.channels import open_channel
from scheduler.serving.kv_cache import block_hashes
from tests.integration.conftest import Client
from tests.pki import session_pki

PROMPT = "You are a helpful assistant. " * 50


def stub(app: SchedulerApp, role: Role, tenant: str = "") -> router_pb2_grpc.RouterStub:
    channel = open_channel(app.address, session_pki().token(app, role, tenant))
    return router_pb2_grpc.RouterStub(channel)


def feed(app: SchedulerApp, *states: str) -> None:
    for i, state in enumerate(states):
        app.routing.apply(
            ReplicaUpdate(
                id=f"r{i}",
                deployment="assistant",
                tenant="chat",
                state=state,
                endpoint=f"127.0.0.1:{9000 + i}",
                model="llama-3.1-8b",
                variant="bf16",
                gpu_model="H100-80GB",
            )
        )
    app.routing.apply(Synced())


def request(**more: Any) -> pb.RouteRequest:
    blocks = block_hashes(PROMPT, 16)
    return pb.RouteRequest(
        deployment="assistant",
        prompt_tokens=len(PROMPT) // 4,
        prompt_blocks=blocks,
        max_tokens=64,
        **more,
    )


def test_route_books_and_complete_releases(app: SchedulerApp) -> None:
    feed(app, "ready", "ready", "draining")
    router = stub(app, Role.SERVICE, "chat")
    first = router.Route(request())
    assert first.replica in {"r0", "r1"} and first.endpoint.startswith("127.0.0.1:")
    assert first.policy == "weighted" and first.ticket and first.reason
    assert first.header.startswith("policy=weighted; replica=")
    assert {c.replica for c in first.candidates} <= {"r0", "r1"}
    # The prefix is now expected on that replica: the same prompt follows it.
    second = router.Route(request())
    assert second.replica == first.replica
    assert second.expected_cached_tokens > 0
    router.Complete(
        pb.CompleteRequest(deployment="assistant", ticket=first.ticket, output_tokens=40)
    )
    with pytest.raises(grpc.RpcError) as again:
        router.Complete(pb.CompleteRequest(deployment="assistant", ticket=first.ticket))
    assert again.value.code() is grpc.StatusCode.NOT_FOUND
    # A failed replica is excluded.
    router.Complete(
        pb.CompleteRequest(deployment="assistant", ticket=second.ticket, replica_failed=True)
    )
    assert router.Route(request()).replica != second.replica


def test_explain_books_nothing_and_scores_every_candidate(app: SchedulerApp) -> None:
    feed(app, "ready", "ready")
    viewer = stub(app, Role.VIEWER)
    answer = viewer.Explain(request(tenant="chat", policy="token_load"))
    assert answer.policy == "token_load" and not answer.ticket
    assert len(answer.candidates) == 2
    assert all("cost_s" in c.scores for c in answer.candidates)
    with pytest.raises(grpc.RpcError) as denied:
        viewer.Route(request(tenant="chat"))
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_errors_name_what_to_fix(app: SchedulerApp) -> None:
    feed(app, "standby", "starting")
    mine = stub(app, Role.SERVICE, "chat")
    with pytest.raises(grpc.RpcError) as unavailable:
        mine.Route(request())
    assert unavailable.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "no routable replica" in (unavailable.value.details() or "")
    other = stub(app, Role.SERVICE, "other")
    with pytest.raises(grpc.RpcError) as hidden:
        other.Route(request())
    assert hidden.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as foreign:
        other.Explain(request(tenant="chat"))
    assert foreign.value.code() is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as bad_policy:
        mine.Explain(request(policy="fastest"))
    assert bad_policy.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as bad_blocks:
        mine.Explain(request(block_tokens=32))
    assert bad_blocks.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "block_tokens" in (bad_blocks.value.details() or "")


def test_route_explain_cli(app: SchedulerApp, tmp_path: Path) -> None:
    feed(app, "ready", "ready")
    client = Client.with_token(app, Role.SERVICE, "chat")
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(PROMPT)
    try:
        args = [
            *client.cli_args(),
            "route",
            "explain",
            "--deployment",
            "assistant",
            "--prompt-file",
            str(prompt),
        ]
        result = CliRunner().invoke(cli, args, env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "policy   weighted" in result.output
        assert "Best candidates" in result.output and "cost_s" in result.output
        tail = args[len(client.cli_args()) :]
        as_json = CliRunner().invoke(cli, [*client.cli_args(), "-o", "json", *tail])
        assert json.loads(as_json.output)["policy"] == "weighted"
        missing = CliRunner().invoke(
            cli, [*args[:-4], "--deployment", "nope", "--prompt-file", str(prompt)]
        )
        assert missing.exit_code != 0 and "NOT_FOUND" in missing.output
    finally:
        client.close()
