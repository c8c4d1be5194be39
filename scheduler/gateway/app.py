"""The gateway's HTTP application: OpenAI's API in front of deployments' replicas.

aiohttp serves and proxies: one asyncio loop holds thousands of streams, its
client streams an upstream body chunk by chunk (`iter_any`, no buffering),
and a handler is cancelled when its client disconnects, which closes the
upstream request. (Starlette/uvicorn plus httpx would need two libraries for
the same; aiohttp is one, already used by the simulated engine.)

Per request: authenticate (bearer token) → parse (400) → find the deployment
the tenant may use (404) → rate-limit the tenant (429) → route (503 when no
replica is routable) → proxy, with the decision in `x-gpupool-route`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from yarl import URL

from scheduler.domain.callers import Caller
from scheduler.domain.errors import PermissionDenied, Unauthenticated
from scheduler.gateway.auth import Authenticator, bearer, inference_tenant, reading_tenant
from scheduler.gateway.limits import TenantLimiter
from scheduler.gateway.replicas import Pool, Pools, ReplicaSource
from scheduler.routing.router import Ticket
from scheduler.routing.view import Decision, RouteRequest
from scheduler.serving.kv_cache import block_hashes, estimate_tokens

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024
# The router needs the head of a prompt to find its cached prefix, not all of it.
MAX_HASHED_BLOCKS = 1024
ROUTE_HEADER = "x-gpupool-route"
SESSION_HEADER = "x-session-id"
_HEADER_UNSAFE = re.compile(r"[^\x20-\x7e]")
_JSON = {"Content-Type": "application/json"}
_SSE = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
# Upstream URLs parsed once per (endpoint, path); cleared past this many (replicas churn).
_MAX_CACHED_URLS = 4096


@dataclass(frozen=True)
class GatewaySettings:
    # Seconds a client is told to wait when no replica is routable.
    unavailable_retry_after_s: int = 1
    connect_timeout_s: float = 5.0
    # Longest silence from an upstream stream before it counts as dead.
    stream_idle_timeout_s: float = 60.0
    health_interval_s: float = 1.0
    # Tries on another replica when one cannot be reached (nothing sent yet).
    connect_retries: int = 1
    max_connections: int = 0  # 0: no limit on upstream connections


def error_body(status: int, message: str, kind: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def error(
    status: int, message: str, kind: str, code: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(
        error_body(status, message, kind, code), status=status, headers=headers
    )


def route_header(decision: Decision) -> str:
    return _HEADER_UNSAFE.sub("?", decision.header())[:2048]


def prompt_text(body: Mapping[str, Any], chat: bool) -> str | None:
    """The prompt as the engine sees it (the simulated engine's chat rendering), or None."""
    if not chat:
        prompt = body.get("prompt", "")
        if isinstance(prompt, list):
            return "".join(p for p in prompt if isinstance(p, str))
        return prompt if isinstance(prompt, str) else None
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    parts = []
    for message in messages:
        if not isinstance(message, dict):
            return None
        content = message.get("content", "")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            return None
        parts.append(f"<|{message.get('role', 'user')}|>{content}")
    return "".join(parts)


def _max_tokens(body: Mapping[str, Any]) -> int | str | None:
    value = body.get("max_tokens", body.get("max_completion_tokens"))
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        return "max_tokens must be a positive integer"
    return value


@dataclass
class _Metrics:
    registry: CollectorRegistry
    requests: Counter = field(init=False)
    decisions: Counter = field(init=False)
    in_flight: Gauge = field(init=False)
    failures: Counter = field(init=False)

    def child(self, metric: Any, *labels: str) -> Any:
        """metric.labels(*labels), looked up once (labels() costs microseconds per call)."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def count(self, deployment: str, code: str) -> None:
        self.child(self.requests, deployment, code).inc()

    def __post_init__(self) -> None:
        # Bounded by deployments × replicas × codes/policies.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self.requests = Counter(
            "gpupool_gateway_requests", "Requests answered", ["deployment", "code"], registry=r
        )
        self.decisions = Counter(
            "gpupool_gateway_route_decisions",
            "Routing decisions",
            ["deployment", "policy", "replica"],
            registry=r,
        )
        self.in_flight = Gauge(
            "gpupool_gateway_in_flight",
            "Requests being proxied",
            ["deployment", "replica"],
            registry=r,
        )
        self.failures = Counter(
            "gpupool_gateway_replica_failures",
            "Replicas that failed a request (excluded until healthy)",
            ["deployment", "replica"],
            registry=r,
        )


class _SseResponse(web.StreamResponse):
    """A streamed response whose headers leave with its first event, in one write
    (one TLS record, one send), not on their own before it. (aiohttp's switch for
    this, the one its plain `Response` uses; older aiohttp ignores it.)"""

    _send_headers_immediately = False


class Gateway:
    def __init__(
        self,
        pools: Pools,
        authenticator: Authenticator,
        limiter: TenantLimiter,
        settings: GatewaySettings | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.pools = pools
        self.auth = authenticator
        self.limiter = limiter
        self.settings = settings or GatewaySettings()
        self.metrics = _Metrics(registry or CollectorRegistry())
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._probing: set[tuple[str, str, str]] = set()
        self._urls: dict[tuple[str, str], URL] = {}

    # -- lifecycle ------------------------------------------------------------
    def app(self, source: ReplicaSource | None = None) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.prometheus)

        async def lifecycle(_: web.Application) -> Any:
            timeout = aiohttp.ClientTimeout(
                total=None,
                connect=self.settings.connect_timeout_s,
                sock_read=self.settings.stream_idle_timeout_s,
            )
            # One pool of keep-alive connections to the engines for every request;
            # no cookies to keep between callers' requests.
            connector = aiohttp.TCPConnector(
                limit=self.settings.max_connections, keepalive_timeout=60
            )
            self._session = aiohttp.ClientSession(
                timeout=timeout,
                connector=connector,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                headers=_JSON,
                # Engines need none of these; each costs header work per request.
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            )
            if source is not None:
                self._spawn(self._follow(source))
            yield
            for task in list(self._tasks):
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self._session.close()

        app.cleanup_ctx.append(lifecycle)
        return app

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _follow(self, source: ReplicaSource) -> None:
        async for event in source.events():
            self.pools.apply(event)

    # -- small endpoints ---------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        if not self.pools.synced.is_set():
            return web.Response(status=503, text="waiting for the replica list")
        return web.Response(text="ok")

    async def prometheus(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def _caller(self, request: web.Request) -> Caller | web.Response:
        try:
            return await self.auth.authenticate(
                bearer(request.headers.get("Authorization", "")), request.remote or ""
            )
        except Unauthenticated as exc:
            return error(
                401,
                exc.message,
                "authentication_error",
                "invalid_api_key",
                {"WWW-Authenticate": "Bearer"},
            )

    async def models(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        if isinstance(caller, web.Response):
            return caller
        data = []
        for pool in self.pools.visible(reading_tenant(caller)):
            routable = sum(1 for r in pool.router.views() if r.routable)
            data.append(
                {
                    "id": pool.deployment,
                    "object": "model",
                    "owned_by": pool.tenant,
                    "root": ",".join(sorted(pool.models)),
                    "ready_replicas": routable,
                }
            )
        return web.json_response({"object": "list", "data": data})

    # -- completions -------------------------------------------------------------
    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, chat=False)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, chat=True)

    async def _complete(self, request: web.Request, chat: bool) -> web.StreamResponse:
        caller = await self._caller(request)
        if isinstance(caller, web.Response):
            return caller
        try:
            tenant = inference_tenant(caller)
        except PermissionDenied as exc:
            return error(403, exc.message, "permission_error", "permission_denied")
        raw = await request.read()
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return error(
                400, f"the body is not valid JSON: {exc}", "invalid_request_error", "invalid_json"
            )
        if not isinstance(body, dict):
            return error(
                400, "the body must be a JSON object", "invalid_request_error", "invalid_json"
            )
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return error(
                400,
                "model is required: the name of a deployment",
                "invalid_request_error",
                "missing_model",
            )
        text = prompt_text(body, chat)
        if text is None:
            what = (
                "messages must be a non-empty list of {role, content}"
                if chat
                else ("prompt must be a string or a list of strings")
            )
            return error(400, what, "invalid_request_error", "invalid_prompt")
        max_tokens = _max_tokens(body)
        if isinstance(max_tokens, str):
            return error(400, max_tokens, "invalid_request_error", "invalid_max_tokens")
        pool = self.pools.find(model, tenant)
        if pool is None:
            where = f" for tenant {tenant}" if tenant else ""
            return error(
                404,
                f"The model `{model[:128]}` does not exist{where}.",
                "invalid_request_error",
                "model_not_found",
            )
        session = request.headers.get(SESSION_HEADER) or body.get("user")
        route = pool.router.request(
            estimate_tokens(text),
            max_tokens=max_tokens,
            blocks=block_hashes(text, pool.router.block_tokens, MAX_HASHED_BLOCKS),
            session=session if isinstance(session, str) and session else None,
        )
        retry_after = self.limiter.admit(
            pool.tenant, route.prompt_tokens + route.expected_output_tokens
        )
        if retry_after:
            self.metrics.count(pool.deployment, "429")
            return error(
                429,
                f"tenant {pool.tenant} is over its rate limit; retry in {retry_after} s",
                "rate_limit_error",
                "rate_limit_exceeded",
                {"Retry-After": str(retry_after)},
            )
        path = "/v1/chat/completions" if chat else "/v1/completions"
        return await self._proxy(request, pool, raw, body, route, path)

    def _url(self, endpoint: str, path: str) -> URL:
        key = (endpoint, path)
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) >= _MAX_CACHED_URLS:
                self._urls.clear()
            url = self._urls[key] = URL(f"http://{endpoint}{path}")
        return url

    async def _proxy(
        self,
        request: web.Request,
        pool: Pool,
        raw: bytes,
        body: dict[str, Any],
        route: RouteRequest,
        path: str,
    ) -> web.StreamResponse:
        assert self._session is not None
        router = pool.router
        for attempt in range(self.settings.connect_retries + 1):
            decision, ticket = router.route(route)
            if ticket is None:
                self.metrics.count(pool.deployment, "503")
                wait = self.settings.unavailable_retry_after_s
                return error(
                    503,
                    f"no replica of {pool.deployment} can take requests now: {decision.reason}",
                    "server_error",
                    "no_routable_replica",
                    {"Retry-After": str(wait), ROUTE_HEADER: route_header(decision)},
                )
            replica = ticket.replica
            self.metrics.child(
                self.metrics.decisions, pool.deployment, decision.policy, replica
            ).inc()
            served = pool.served_model.get(replica, pool.deployment)
            # The caller's bytes go through as they came unless the model name changes.
            data = (
                raw if body["model"] == served else json.dumps({**body, "model": served}).encode()
            )
            url = self._url(pool.endpoints.get(replica, ""), path)
            gauge = self.metrics.child(self.metrics.in_flight, pool.deployment, replica)
            gauge.inc()
            try:
                upstream = await self._session.post(url, data=data)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                gauge.dec()
                router.finish(ticket)
                self._failed(pool, replica, f"connect: {exc!s:.200}")
                if attempt < self.settings.connect_retries:
                    continue
                self.metrics.count(pool.deployment, "503")
                return error(
                    503,
                    f"replica {replica} of {pool.deployment} is unreachable",
                    "server_error",
                    "replica_unreachable",
                    {"Retry-After": str(self.settings.unavailable_retry_after_s)},
                )
            try:
                return await self._relay(request, pool, ticket, decision, upstream)
            finally:
                gauge.dec()
                upstream.release()
        raise AssertionError("unreachable")

    async def _relay(
        self,
        request: web.Request,
        pool: Pool,
        ticket: Ticket,
        decision: Decision,
        upstream: aiohttp.ClientResponse,
    ) -> web.StreamResponse:
        router = pool.router
        headers = {ROUTE_HEADER: route_header(decision)}
        streaming = upstream.headers.get("Content-Type", "").startswith("text/event-stream")
        if not streaming:
            try:
                payload = await upstream.read()
            except asyncio.CancelledError:
                upstream.close()
                router.finish(ticket)
                raise
            except (TimeoutError, aiohttp.ClientError) as exc:
                router.finish(ticket)
                self._failed(pool, ticket.replica, f"read: {exc!s:.200}")
                self.metrics.count(pool.deployment, "502")
                return error(
                    502,
                    f"replica {ticket.replica} failed mid-response",
                    "server_error",
                    "replica_failed",
                    headers,
                )
            router.finish(ticket, _completion_tokens(payload) if upstream.status == 200 else 0)
            self.metrics.count(pool.deployment, str(upstream.status))
            content_type = upstream.headers.get("Content-Type", "application/json")
            return web.Response(
                body=payload,
                status=upstream.status,
                headers={**headers, "Content-Type": content_type},
            )
        response = _SseResponse(status=upstream.status, headers={**headers, **_SSE})
        await response.prepare(request)
        generated = 0
        finished = False
        chunks = upstream.content.iter_any().__aiter__()
        try:
            while True:
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    break
                except (TimeoutError, aiohttp.ClientError) as exc:
                    return await self._died(response, pool, ticket, f"{exc!s:.200}")
                if not ticket.prefilled:
                    router.first_token(ticket)
                events = chunk.count(b"data: {")
                if events:
                    generated += events
                    router.generated(ticket, events)
                if b"data: [DONE]" in chunk:
                    # The last event and the end of the body in one write (one TLS
                    # record, one send); the upstream's own end is still read below.
                    finished = True
                    await response.write_eof(chunk)
                elif not finished:
                    await response.write(chunk)
        except (asyncio.CancelledError, ConnectionError):
            # The client went away: closing the upstream response cancels the request.
            upstream.close()
            router.finish(ticket)
            self.metrics.count(pool.deployment, "499")
            raise
        if not finished:
            return await self._died(response, pool, ticket, "the stream ended without [DONE]")
        router.finish(ticket, max(0, generated - 1))
        self.metrics.count(pool.deployment, str(upstream.status))
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    async def _died(
        self, response: web.StreamResponse, pool: Pool, ticket: Ticket, why: str
    ) -> web.StreamResponse:
        """The replica died or hung mid-stream: an error event to the client, the
        replica excluded until its /health answers again."""
        self._failed(pool, ticket.replica, f"stream: {why}")
        pool.router.finish(ticket)
        self.metrics.count(pool.deployment, "502")
        event = error_body(
            502,
            f"replica {ticket.replica} failed mid-stream ({why}); retry",
            "server_error",
            "replica_failed",
        )
        with contextlib.suppress(ConnectionError):
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        return response

    # -- failures and recovery -----------------------------------------------------
    def _failed(self, pool: Pool, replica: str, why: str) -> None:
        log.warning(
            "replica %s of %s failed (%s); excluded until healthy", replica, pool.deployment, why
        )
        self.metrics.failures.labels(pool.deployment, replica).inc()
        pool.router.set_healthy(replica, False)
        key = (pool.tenant, pool.deployment, replica)
        if key not in self._probing:
            self._probing.add(key)
            self._spawn(self._probe(pool, replica, key))

    async def _probe(self, pool: Pool, replica: str, key: tuple[str, str, str]) -> None:
        """Poll the replica's /health until it answers 200, then route to it again."""
        assert self._session is not None
        try:
            while pool.router.replica(replica) is not None:
                await asyncio.sleep(self.settings.health_interval_s)
                endpoint = pool.endpoints.get(replica, "")
                try:
                    async with self._session.get(
                        f"http://{endpoint}/health",
                        timeout=aiohttp.ClientTimeout(total=self.settings.health_interval_s * 2),
                    ) as answer:
                        if answer.status == 200:
                            pool.router.set_healthy(replica, True)
                            log.info("replica %s of %s is healthy again", replica, pool.deployment)
                            return
                except (TimeoutError, aiohttp.ClientError, OSError):
                    continue
        finally:
            self._probing.discard(key)


def _completion_tokens(payload: bytes) -> int | None:
    try:
        usage = json.loads(payload).get("usage") or {}
        value = usage.get("completion_tokens")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None
