"""The gateway end to end: a deployment created with the CLI on simulated agents
and engines; `gpupool gateway`'s app learns its replicas from the scheduler's
real WatchReplicas stream and serves streamed completions over HTTPS with a
tenant's token; a scale-down's draining replica stops receiving requests."""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine

from gpupool.v1 import router_pb2, router_pb2_grpc
from scheduler.domain.callers import Role
from scheduler.domain.clock import SystemClock
from scheduler.gateway.app import Gateway
from scheduler.gateway.auth import TokenAuthenticator
from scheduler.gateway.limits import Limits, TenantLimiter
from scheduler.gateway.replicas import Pools
from scheduler.gateway.server import GatewayTls, start
from scheduler.gateway.watch import WatchReplicaSource
from scheduler.services.tokens import TokenService
from tests.e2e.conftest import Cluster, wait_for
from tests.e2e.test_deploy_serving import ENGINE_ARGS, WAIT_S, _gpupool, serving_cluster
from tests.integration.conftest import Client
from tests.pki import session_pki

__all__ = ["serving_cluster"]  # the fixture, shared with the deployment e2e test
PROMPT = "Route me to the replica that already holds this prompt, please. " * 8


class GatewayThread:
    """The gateway's app on its own event loop in a thread, as `gpupool gateway` runs it."""

    def __init__(self, cluster: Cluster, admin: Client) -> None:
        assert cluster.app is not None
        self.engine = create_engine(cluster.database_url)
        tokens = TokenService(self.engine, SystemClock())
        self.pools = Pools()
        self.gateway = Gateway(self.pools, TokenAuthenticator(tokens), TenantLimiter(Limits()))
        self.source = WatchReplicaSource(cluster.app.address, admin.credentials)
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(20), "the gateway did not start"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        files = session_pki().server_files()
        tls = GatewayTls(files["tls_cert"], files["tls_key"])
        runner, self.port = await start(self.gateway.app(self.source), "127.0.0.1", 0, tls)
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=20)
        self.engine.dispose()

    def request(
        self, token: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, str], str]:
        context = ssl.create_default_context(cafile=str(session_pki().ca_cert))
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, timeout=30, context=context
        )
        try:
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            if body is None:
                connection.request("GET", path, headers=headers)
            else:
                connection.request("POST", path, json.dumps(body), headers)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read().decode()
        finally:
            connection.close()

    def ready_replicas(self, token: str) -> int:
        status, _, text = self.request(token, "/v1/models")
        if status != 200:
            return -1
        models = {m["id"]: m for m in json.loads(text)["data"]}
        return int(models["chat"]["ready_replicas"]) if "chat" in models else 0


def route_of(headers: dict[str, str]) -> dict[str, str]:
    head, _, reason = headers["x-gpupool-route"].partition("; reason=")
    return {**dict(p.split("=", 1) for p in head.split("; ")), "reason": reason}


@pytest.fixture
def admin(serving_cluster: Cluster) -> Iterator[Client]:
    assert serving_cluster.app is not None
    client = Client.as_admin(serving_cluster.app)
    yield client
    client.close()


def test_the_gateway_routes_a_real_deployment_from_the_watch(
    serving_cluster: Cluster, admin: Client
) -> None:
    cluster = serving_cluster
    assert cluster.app is not None
    for node in ("h100-0", "h100-1"):
        cluster.start_agent(node)
    wait_for(lambda: cluster.connected(["h100-0", "h100-1"]), WAIT_S, "agents to connect")
    token = session_pki().token(cluster.app, Role.SERVICE, "team-a").token
    stranger = session_pki().token(cluster.app, Role.SERVICE, "team-b").token
    _gpupool(
        admin,
        "deploy",
        "create",
        "chat",
        "--tenant",
        "team-a",
        "--model",
        "llama-3.1-8b",
        "--variant",
        "fp16:H100-80GB",
        "--min",
        "2",
        "--max",
        "2",
        "--engine-arg",
        f"extra_args={ENGINE_ARGS}",
    )
    gateway = GatewayThread(cluster, admin)
    try:
        wait_for(lambda: gateway.ready_replicas(token) == 2, WAIT_S, "two ready replicas")
        body = {"model": "chat", "prompt": PROMPT, "max_tokens": 12, "stream": True}
        status, headers, text = gateway.request(token, "/v1/completions", body)
        assert status == 200, text
        events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        assert sum(bool(json.loads(e)["choices"][0]["text"]) for e in events[:-1]) == 12
        first = route_of(headers)["replica"]
        # The same prompt again: its prefix is on `first`.
        for _ in range(3):
            status, headers, _ = gateway.request(token, "/v1/completions", body)
            assert status == 200 and route_of(headers)["replica"] == first
        # The scheduler's Router service sees the same replicas (from its own watch).
        router = router_pb2_grpc.RouterStub(admin.channel)
        explained = router.Explain(
            router_pb2.RouteRequest(deployment="chat", tenant="team-a", prompt_tokens=100),
            timeout=30,
        )
        assert explained.replica in {
            v.id for v in gateway.pools.pools[("team-a", "chat")].router.views()
        }
        # Another tenant does not see team-a's deployment.
        status, _, _ = gateway.request(stranger, "/v1/completions", body)
        assert status == 404

        # Scale to one: the draining replica leaves the routable set.
        _gpupool(admin, "deploy", "scale", "chat", "--replicas", "1")
        wait_for(lambda: gateway.ready_replicas(token) == 1, WAIT_S, "one ready replica")
        pool = gateway.pools.find("chat", "team-a")
        assert pool is not None
        remaining = {v.id for v in pool.router.views() if v.routable}
        for _ in range(3):
            status, headers, text = gateway.request(token, "/v1/completions", body)
            assert status == 200, text
            assert route_of(headers)["replica"] in remaining
    finally:
        gateway.stop()
        _gpupool(admin, "deploy", "delete", "chat")
