"""The gateway over real HTTPS against simulated engines on loopback.

Tokens are real (the trust issue's, in PostgreSQL); replicas come from an
in-process ReplicaSource fed by each test, as the scheduler's watch would.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import create_engine

from scheduler.domain.callers import SYSTEM, Role
from scheduler.domain.clock import SystemClock
from scheduler.gateway.app import Gateway, GatewaySettings
from scheduler.gateway.auth import TokenAuthenticator
from scheduler.gateway.limits import Limits, TenantLimiter
from scheduler.gateway.replicas import InProcessReplicaSource, Pools, ReplicaUpdate, Synced
from scheduler.gateway.server import GatewayTls, start
from scheduler.routing.view import EngineMetrics
from scheduler.services.tokens import TokenService
from scheduler.serving.engine_sim.engine import SimulatedEngine
from scheduler.serving.engine_sim.server import create_app
from scheduler.serving.performance import engine_performance
from tests.e2e.conftest import free_port, wait_for
from tests.pki import session_pki

PROMPT = "You are a helpful assistant who answers in one sentence. " * 30


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    url: str
    session: aiohttp.ClientSession
    source: InProcessReplicaSource
    gateway: Gateway
    engines: dict[str, SimulatedEngine]
    endpoints: dict[str, str]
    tokens: dict[str, str]
    clock: Clock
    extra: dict[str, Any] = field(default_factory=dict)

    def headers(self, tenant: str = "chat", **more: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[tenant]}", **more}

    def replica(
        self,
        rid: str,
        state: str = "ready",
        tenant: str = "chat",
        deployment: str = "assistant",
        **metrics: Any,
    ) -> None:
        self.source.put(
            ReplicaUpdate(
                id=rid,
                deployment=deployment,
                tenant=tenant,
                state=state,
                endpoint=self.endpoints[rid],
                model="llama-3.1-8b",
                variant="bf16",
                gpu_model="H100-80GB",
                gpu_count=1,
                metrics=EngineMetrics(**metrics) if metrics else None,
            )
        )

    async def settle(self) -> None:
        for _ in range(50):
            await asyncio.sleep(0)

    async def post(
        self, body: Any, path: str = "/v1/completions", tenant: str = "chat", **headers: str
    ) -> aiohttp.ClientResponse:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await self.session.post(
            self.url + path, data=data, headers={**self.headers(tenant), **headers}
        )

    def pool(self, deployment: str = "assistant", tenant: str = "chat") -> Any:
        return self.gateway.pools.pools[(tenant, deployment)]


def route_of(response: aiohttp.ClientResponse) -> dict[str, str]:
    """The x-gpupool-route header's fields (the reason is last and may hold '; ')."""
    head, _, reason = response.headers["x-gpupool-route"].partition("; reason=")
    fields = dict(part.split("=", 1) for part in head.split("; "))
    return {**fields, "reason": reason}


async def sse(response: aiohttp.ClientResponse) -> list[str]:
    text = await response.text()
    return [line[6:] for line in text.splitlines() if line.startswith("data: ")]


async def dying_upstream(request: web.Request) -> web.StreamResponse:
    """Streams two tokens, then the connection drops (a replica whose engine died)."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for word in ("half", "way"):
        chunk = {"choices": [{"index": 0, "text": word, "finish_reason": None}]}
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
    assert request.transport is not None
    request.transport.close()
    return response


def dying_app(state: dict[str, bool]) -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/completions", dying_upstream)

    async def health(_: web.Request) -> web.Response:
        return web.Response(status=200 if state["healthy"] else 503)

    app.router.add_get("/health", health)
    return app


@asynccontextmanager
async def harness(
    database_url: str,
    engines: int = 2,
    limits: Limits | None = None,
    speedup: float = 1000.0,
    policies: dict[str, str] | None = None,
    dying: dict[str, bool] | None = None,
) -> AsyncIterator[Harness]:
    db = create_engine(database_url)
    tokens = TokenService(db, SystemClock())
    secrets = {
        tenant: tokens.create(SYSTEM, f"gw-{tenant}", Role.SERVICE, tenant)[1]
        for tenant in ("chat", "other")
    }
    secrets["viewer"] = tokens.create(SYSTEM, "gw-viewer", Role.VIEWER, "")[1]
    perf = engine_performance("H100-80GB", "llama-3.1-8b")
    servers: list[TestServer] = []
    sims: dict[str, SimulatedEngine] = {}
    endpoints: dict[str, str] = {}
    for i in range(engines):
        rid = f"r{i}"
        sims[rid] = SimulatedEngine(perf, speedup=speedup)
        server = TestServer(create_app(sims[rid], "llama-3.1-8b", "llama-3.1-8b"), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        endpoints[rid] = f"127.0.0.1:{server.port}"
    if dying is not None:
        server = TestServer(dying_app(dying), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        endpoints["dying"] = f"127.0.0.1:{server.port}"
    clock = Clock()
    source = InProcessReplicaSource()
    pools = Pools(policies=policies, session_ttl_s=60, clock=clock)
    gateway = Gateway(
        pools,
        TokenAuthenticator(tokens),
        TenantLimiter(limits or Limits()),
        GatewaySettings(health_interval_s=0.05),
    )
    pki = session_pki()
    files = pki.server_files()
    runner, port = await start(
        gateway.app(source), "127.0.0.1", 0, GatewayTls(files["tls_cert"], files["tls_key"])
    )
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
    h = Harness(
        f"https://127.0.0.1:{port}", session, source, gateway, sims, endpoints, secrets, clock
    )
    try:
        for rid in sims:
            h.replica(rid)
        source.put(Synced())
        await h.settle()
        yield h
    finally:
        await session.close()
        await runner.cleanup()
        for server in servers:
            await server.close()
        db.dispose()


def run(database_url: str, test: Callable[[Harness], Awaitable[None]], **kwargs: Any) -> None:
    async def main() -> None:
        async with harness(database_url, **kwargs) as h:
            await test(h)

    asyncio.run(asyncio.wait_for(main(), timeout=60))


def test_streaming_passes_through_token_by_token(clean_database: str) -> None:
    async def body(h: Harness) -> None:
        # A slow engine (real speed) and a long answer: the first chunk must reach
        # the client while the engine is still generating.
        request = {
            "model": "assistant",
            "stream": True,
            "max_tokens": 400,
            "messages": [{"role": "user", "content": "tell me everything"}],
        }
        response = await h.post(request, "/v1/chat/completions")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        route = route_of(response)
        assert route["policy"] == "weighted" and route["replica"] in h.engines
        first = await response.content.readuntil(b"\n\n")
        assert first.startswith(b"data: {")
        assert h.engines[route["replica"]].stats.finished == 0  # still generating
        rest = (first + await response.content.read()).decode()
        events = [line[6:] for line in rest.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        words = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        assert len(words.split()) == 400
        plain = await h.post({"model": "assistant", "prompt": "hi", "max_tokens": 3})
        answer = await plain.json()
        assert answer["usage"]["completion_tokens"] == 3
        assert "x-gpupool-route" in plain.headers

    run(clean_database, body, speedup=1.0)


def test_models_lists_only_the_tenants_deployments(clean_database: str) -> None:
    async def body(h: Harness) -> None:
        h.endpoints["o0"] = h.endpoints["r0"]
        h.replica("o0", tenant="other", deployment="secret")
        await h.settle()
        mine = await (await h.session.get(h.url + "/v1/models", headers=h.headers())).json()
        assert [m["id"] for m in mine["data"]] == ["assistant"]
        assert mine["data"][0]["ready_replicas"] == 2
        everything = await h.session.get(h.url + "/v1/models", headers=h.headers("viewer"))
        assert {m["id"] for m in (await everything.json())["data"]} == {"assistant", "secret"}
        # Another tenant's deployment does not exist for this caller.
        response = await h.post({"model": "secret", "prompt": "x"})
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "model_not_found"
        # Viewers read, they do not send work.
        response = await h.post({"model": "assistant", "prompt": "x"}, tenant="viewer")
        assert response.status == 403

    run(clean_database, body)


def test_bad_requests_get_openai_error_shapes(clean_database: str) -> None:
    async def body(h: Harness) -> None:
        bad = await h.post(b"{not json")
        assert bad.status == 400
        error = (await bad.json())["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "invalid_request_error" and error["code"] == "invalid_json"
        assert (await h.post({"prompt": "no model"})).status == 400
        assert (await h.post({"model": "assistant", "prompt": 7})).status == 400
        bad_max = await h.post({"model": "assistant", "prompt": "x", "max_tokens": 0})
        assert bad_max.status == 400
        chat = await h.post({"model": "assistant", "messages": []}, "/v1/chat/completions")
        assert chat.status == 400
        unknown = await h.post({"model": "no-such-deployment", "prompt": "x"})
        assert unknown.status == 404
        anonymous = await h.session.post(h.url + "/v1/completions", json={"model": "assistant"})
        assert anonymous.status == 401
        forged = await h.session.post(
            h.url + "/v1/completions",
            json={"model": "assistant"},
            headers={"Authorization": "Bearer gpp_000000000000_" + "0" * 64},
        )
        assert forged.status == 401
        assert (await forged.json())["error"]["type"] == "authentication_error"

    run(clean_database, body)


def test_rate_limits_answer_429_with_retry_after(clean_database: str) -> None:
    async def body(h: Harness) -> None:
        request = {"model": "assistant", "prompt": "hello", "max_tokens": 2}
        assert (await h.post(request)).status == 200
        assert (await h.post(request)).status == 200
        limited = await h.post(request)
        assert limited.status == 429
        assert int(limited.headers["Retry-After"]) >= 1
        assert (await limited.json())["error"]["type"] == "rate_limit_error"
        # Tokens per minute: a request asking for more output than is left waits too.
        big = await h.post({**request, "max_tokens": 100_000}, tenant="other")
        assert big.status == 404  # the other tenant has no deployment: checked before limits

    run(clean_database, body, limits=Limits(requests_per_minute=2, tokens_per_minute=10_000))


def test_token_rate_limit(clean_database: str) -> None:
    async def body(h: Harness) -> None:
        first = await h.post({"model": "assistant", "prompt": "hello", "max_tokens": 80})
        assert first.status == 200
        second = await h.post({"model": "assistant", "prompt": "hello", "max_tokens": 80})
        assert second.status == 429
        assert "Retry-After" in second.headers

    run(clean_database, body, limits=Limits(tokens_per_minute=100))


def test_no_routable_replica_is_503_with_retry_after(clean_database: str) -> None:
    async def body(h: Harness) -> None:
        h.replica("r0", state="draining")
        h.replica("r1", state="standby")
        await h.settle()
        response = await h.post({"model": "assistant", "prompt": "x"})
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        error = (await response.json())["error"]
        assert "no routable replica" in error["message"]
        assert "draining" in error["message"] and "standby" in error["message"]
        h.replica("r1", state="ready")
        await h.settle()
        again = await h.post({"model": "assistant", "prompt": "x"})
        assert again.status == 200 and route_of(again)["replica"] == "r1"

    run(clean_database, body)


def test_prefix_affinity_holds(clean_database: str) -> None:
    async def body(h: Harness) -> None:
        chosen = set()
        for _ in range(4):
            response = await h.post({"model": "assistant", "prompt": PROMPT, "max_tokens": 2})
            assert response.status == 200
            chosen.add(route_of(response)["replica"])
            await response.read()
        assert len(chosen) == 1
        warm = chosen.pop()
        assert h.engines[warm].stats.prefix_hits > 0
        cold = next(r for r in h.engines if r != warm)
        assert h.engines[cold].stats.prompt_tokens == 0

    run(clean_database, body)


def test_a_saturated_replica_is_avoided(clean_database: str) -> None:
    async def body(h: Harness) -> None:
        # r0 holds the prompt's prefix, but its engine reports a full cache and a queue.
        first = await h.post({"model": "assistant", "prompt": PROMPT, "max_tokens": 2})
        warm = route_of(first)["replica"]
        await first.read()
        h.replica(warm, kv_cache_usage=0.99, num_requests_running=200, num_requests_waiting=12)
        await h.settle()
        for _ in range(3):
            response = await h.post({"model": "assistant", "prompt": PROMPT, "max_tokens": 2})
            route = route_of(response)
            assert route["replica"] != warm
            assert "1 saturated skipped" in route["reason"]
            await response.read()

    run(clean_database, body)


def test_session_stickiness_lasts_its_ttl(clean_database: str) -> None:
    async def body(h: Harness) -> None:
        def ask(prompt: str) -> Awaitable[aiohttp.ClientResponse]:
            return h.post(
                {"model": "assistant", "prompt": prompt, "max_tokens": 2},
                **{"x-session-id": "conversation-7"},
            )

        first = await ask("a")
        bound = route_of(first)["replica"]
        for prompt in ("b" * 300, "c" * 3000, "d"):
            response = await ask(prompt)
            assert route_of(response)["replica"] == bound
            assert route_of(response)["reason"] == "session affinity"
        h.clock.now += 61  # past the 60 s TTL
        response = await ask("e")
        assert route_of(response)["reason"].startswith("session unbound")
        # The `user` field names a session too.
        by_user = await h.post({"model": "assistant", "prompt": "f", "user": "u1"})
        again = await h.post({"model": "assistant", "prompt": "g", "user": "u1"})
        assert route_of(again)["replica"] == route_of(by_user)["replica"]

    run(clean_database, body, policies={"assistant": "session"})


def test_a_replica_dying_mid_stream_sends_an_error_event_and_is_excluded(
    clean_database: str,
) -> None:
    state = {"healthy": True}

    async def body(h: Harness) -> None:
        h.replica("r0", state="draining")
        h.replica("r1", state="draining")
        h.replica("dying")
        await h.settle()
        response = await h.post({"model": "assistant", "prompt": "x", "stream": True})
        assert route_of(response)["replica"] == "dying"
        events = await sse(response)  # ends: no hang
        assert json.loads(events[0])["choices"][0]["text"] == "half"
        error = json.loads(events[-2])["error"]
        assert error["code"] == "replica_failed" and events[-1] == "[DONE]"
        state["healthy"] = False
        h.replica("r1")
        await h.settle()
        for _ in range(3):
            response = await h.post({"model": "assistant", "prompt": "x", "max_tokens": 1})
            assert route_of(response)["replica"] == "r1"
        # Back once its /health answers 200 again.
        state["healthy"] = True
        pool = h.pool()
        for _ in range(200):
            if pool.router.replica("dying").healthy:
                break
            await asyncio.sleep(0.02)
        assert pool.router.replica("dying").healthy

    run(clean_database, body, dying=state)


def test_a_client_disconnect_cancels_the_upstream_request(clean_database: str) -> None:
    async def body(h: Harness) -> None:
        response = await h.post(
            {"model": "assistant", "prompt": "x", "max_tokens": 5000, "stream": True}
        )
        replica = route_of(response)["replica"]
        await response.content.readuntil(b"\n\n")
        engine = h.engines[replica]
        assert engine.stats.running == 1
        response.close()  # the client goes away
        for _ in range(250):
            if engine.stats.running == 0:
                break
            await asyncio.sleep(0.02)
        assert engine.stats.running == 0
        assert engine.stats.generation_tokens < 5000
        load = h.pool().router.replica(replica).load
        assert load.in_flight == 0

    run(clean_database, body, speedup=1.0)


@pytest.mark.parametrize("policy", ["round_robin", "least_request", "token_load", "prefix"])
def test_every_policy_serves_through_the_gateway(clean_database: str, policy: str) -> None:
    async def body(h: Harness) -> None:
        response = await h.post({"model": "assistant", "prompt": "x", "max_tokens": 2})
        assert response.status == 200
        assert route_of(response)["policy"] == policy

    run(clean_database, body, policies={"assistant": policy})


def test_the_gateway_command_serves_https_from_a_replicas_file(
    clean_database: str, tmp_path: Path
) -> None:
    """`gpupool gateway` as its own process: HTTPS from the local CA in --data-dir."""
    db = create_engine(clean_database)
    _, token = TokenService(db, SystemClock()).create(SYSTEM, "gw-cli", Role.SERVICE, "chat")
    db.dispose()
    replicas = tmp_path / "replicas.yaml"
    replicas.write_text(
        "replicas:\n  - {id: e0, deployment: assistant, tenant: chat, endpoint: '127.0.0.1:9',"
        " model: llama-3.1-8b, gpu_model: H100-80GB}\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scheduler.cli.main",
            "gateway",
            "--listen",
            f"127.0.0.1:{port}",
            "--database-url",
            clean_database,
            "--replicas",
            str(replicas),
            "--data-dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        ca = tmp_path / "pki" / "ca.crt"

        def get(path: str, headers: dict[str, str]) -> tuple[int, str]:
            context = ssl.create_default_context(cafile=str(ca))
            connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
            try:
                connection.request("GET", path, headers=headers)
                answer = connection.getresponse()
                return answer.status, answer.read().decode()
            finally:
                connection.close()

        def healthy() -> bool:
            try:
                return ca.exists() and get("/health", {})[0] == 200
            except OSError:
                return False

        wait_for(healthy, 120, "the gateway process to serve")
        status, text = get("/v1/models", {"Authorization": f"Bearer {token}"})
        assert status == 200
        assert [m["id"] for m in json.loads(text)["data"]] == ["assistant"]
        assert get("/v1/models", {})[0] == 401
    finally:
        process.terminate()
        process.wait(timeout=20)
