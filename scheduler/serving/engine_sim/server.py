"""The simulated engine's HTTP server: OpenAI's API as vLLM serves it.

- POST /v1/completions and /v1/chat/completions (``"stream": true``: server-
  sent events, one chunk per token, then ``data: [DONE]``);
- GET /v1/models, /health (503 while "loading" the weights, then 200);
- GET /metrics in vLLM's names (prometheus-client), labelled model_name.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from scheduler.serving.engine_sim.engine import RequestTooLong, Sequence, SimulatedEngine

MAX_TOKENS_DEFAULT = 16
MAX_BODY_BYTES = 8 * 1024 * 1024
_ENGINE = web.AppKey("engine", SimulatedEngine)
_STATE = web.AppKey("state", dict)


class EngineMetrics:
    """vLLM's metric names over one engine's stats, refreshed on each scrape."""

    def __init__(self, engine: SimulatedEngine, model_name: str) -> None:
        self.engine = engine
        self.registry = CollectorRegistry()
        labels = ["model_name"]
        r = self.registry
        self._running = Gauge(
            "vllm:num_requests_running", "Requests in the batch", labels, registry=r
        )
        self._waiting = Gauge("vllm:num_requests_waiting", "Requests queued", labels, registry=r)
        self._kv = Gauge("vllm:kv_cache_usage_perc", "KV-cache use, 1 = full", labels, registry=r)
        # The name before vLLM 0.9 (dashboards and older scrapers read it).
        self._gpu_cache = Gauge(
            "vllm:gpu_cache_usage_perc", "KV-cache use (old name)", labels, registry=r
        )
        self._prompt = Counter("vllm:prompt_tokens", "Prefilled prompt tokens", labels, registry=r)
        self._generation = Counter("vllm:generation_tokens", "Generated tokens", labels, registry=r)
        self._queries = Counter(
            "vllm:prefix_cache_queries", "Prompt tokens looked up", labels, registry=r
        )
        self._hits = Counter(
            "vllm:prefix_cache_hits", "Prompt tokens found cached", labels, registry=r
        )
        self._success = Counter("vllm:request_success", "Finished requests", labels, registry=r)
        self._ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Time to first token",
            labels,
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40),
        )
        self._e2e = Histogram(
            "vllm:e2e_request_latency_seconds",
            "Request latency",
            labels,
            registry=r,
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120),
        )
        self._labels = {"model_name": model_name}
        self._seen = {"prompt": 0, "generation": 0, "queries": 0, "hits": 0, "finished": 0}

    def render(self) -> bytes:
        stats = self.engine.stats
        labels = self._labels
        self._running.labels(**labels).set(stats.running)
        self._waiting.labels(**labels).set(stats.waiting)
        self._kv.labels(**labels).set(stats.kv_usage)
        self._gpu_cache.labels(**labels).set(stats.kv_usage)
        for key, counter, total in (
            ("prompt", self._prompt, stats.prompt_tokens),
            ("generation", self._generation, stats.generation_tokens),
            ("queries", self._queries, stats.prefix_queries),
            ("hits", self._hits, stats.prefix_hits),
            ("finished", self._success, stats.finished),
        ):
            counter.labels(**labels).inc(total - self._seen[key])
            self._seen[key] = total
        for value in stats.ttft_s:
            self._ttft.labels(**labels).observe(value)
        for value in stats.e2e_s:
            self._e2e.labels(**labels).observe(value)
        stats.ttft_s.clear()
        stats.e2e_s.clear()
        return bytes(generate_latest(self.registry))


def _error(status: int, message: str, kind: str = "BadRequestError") -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    return web.json_response(body, status=status)


async def _body(request: web.Request) -> Mapping[str, Any] | web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "the body must be JSON")
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object")
    state = request.app[_STATE]
    model = body.get("model", state["served_model_name"])
    if model != state["served_model_name"]:
        return _error(404, f"The model `{model}` does not exist.", "NotFoundError")
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or MAX_TOKENS_DEFAULT
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return _error(400, "max_tokens must be a positive integer")
    return body


def _prompt_of_chat(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return None
    parts = []
    for message in messages:
        if not isinstance(message, dict):
            return None
        content = message.get("content", "")
        if isinstance(content, list):  # content parts: keep the text ones
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        parts.append(f"<|{message.get('role', 'user')}|>{content}")
    return "".join(parts)


async def completions(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    prompt = body.get("prompt", "")
    if isinstance(prompt, list):
        prompt = "".join(p for p in prompt if isinstance(p, str))
    if not isinstance(prompt, str):
        return _error(400, "prompt must be a string")
    return await _serve(request, body, prompt, chat=False)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    prompt = _prompt_of_chat(body.get("messages"))
    if prompt is None:
        return _error(400, "messages must be a non-empty list of {role, content}")
    return await _serve(request, body, prompt, chat=True)


async def _serve(
    request: web.Request, body: Mapping[str, Any], prompt: str, chat: bool
) -> web.StreamResponse:
    engine = request.app[_ENGINE]
    state = request.app[_STATE]
    if not state["ready"]:
        return _error(503, "the engine is still loading its weights", "ServiceUnavailableError")
    max_tokens = int(
        body.get("max_tokens") or body.get("max_completion_tokens") or MAX_TOKENS_DEFAULT
    )
    try:
        sequence = engine.submit(prompt, max_tokens)
    except RequestTooLong as exc:
        return _error(400, str(exc))
    ids = {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
        "created": int(time.time()),
        "model": state["served_model_name"],
    }
    try:
        if body.get("stream"):
            return await _stream(request, engine, sequence, ids, chat, body)
        text = "".join([t async for t in engine.tokens(sequence)])
    except (asyncio.CancelledError, ConnectionResetError):
        engine.cancel(sequence)
        raise
    usage = _usage(sequence)
    if chat:
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "length",
        }
        return web.json_response(
            {**ids, "object": "chat.completion", "choices": [choice], "usage": usage}
        )
    choice = {"index": 0, "text": text, "finish_reason": "length", "logprobs": None}
    return web.json_response(
        {**ids, "object": "text_completion", "choices": [choice], "usage": usage}
    )


def _usage(sequence: Sequence) -> dict[str, Any]:
    return {
        "prompt_tokens": sequence.prompt_tokens,
        "completion_tokens": sequence.generated,
        "total_tokens": sequence.prompt_tokens + sequence.generated,
        "prompt_tokens_details": {"cached_tokens": sequence.cached_tokens},
    }


async def _stream(
    request: web.Request,
    engine: SimulatedEngine,
    sequence: Sequence,
    ids: Mapping[str, Any],
    chat: bool,
    body: Mapping[str, Any],
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    # The headers leave with the first event, in one write (aiohttp's own switch).
    response._send_headers_immediately = False
    await response.prepare(request)
    kind = "chat.completion.chunk" if chat else "text_completion"

    def event(choice: dict[str, Any], usage: dict[str, Any] | None = None) -> bytes:
        chunk: dict[str, Any] = {**ids, "object": kind, "choices": [choice] if choice else []}
        if usage is not None:
            chunk["usage"] = usage
        return f"data: {json.dumps(chunk)}\n\n".encode()

    # A token's event is the same bytes as event() would give, from a template made
    # once per request (what a real engine's serializer costs is not simulated).
    head = json.dumps({**ids, "object": kind})[:-1]
    if chat:
        prefix = f'data: {head}, "choices": [{{"index": 0, "delta": {{"content": '
        suffix = '}, "finish_reason": null}]}\n\n'
        await response.write(
            event(
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            )
        )
    else:
        prefix = f'data: {head}, "choices": [{{"index": 0, "text": '
        suffix = ', "finish_reason": null, "logprobs": null}]}\n\n'
    async for token in engine.tokens(sequence):
        await response.write(f"{prefix}{json.dumps(token)}{suffix}".encode())
    last: dict[str, Any] = {"index": 0, "finish_reason": "length"}
    if chat:
        last["delta"] = {}
    else:
        last.update(text="", logprobs=None)
    tail = event(last)
    options = body.get("stream_options") or {}
    if isinstance(options, dict) and options.get("include_usage"):
        tail += event({}, _usage(sequence))
    # The last events and the end of the body in one write.
    await response.write_eof(tail + b"data: [DONE]\n\n")
    return response


async def models(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    engine = request.app[_ENGINE]
    entry = {
        "id": state["served_model_name"],
        "object": "model",
        "created": state["started"],
        "owned_by": "gpupool-simulated-engine",
        "root": state["model"],
        "max_model_len": engine.max_model_len,
    }
    return web.json_response({"object": "list", "data": [entry]})


async def health(request: web.Request) -> web.Response:
    if not request.app[_STATE]["ready"]:
        return web.Response(status=503, text="loading")
    return web.Response(status=200)


async def metrics(request: web.Request) -> web.Response:
    payload = request.app[_STATE]["metrics"].render()
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(
    engine: SimulatedEngine, model: str, served_model_name: str, load_seconds: float = 0.0
) -> web.Application:
    """The aiohttp application; the engine starts with it, /health turns 200
    after `load_seconds` (the simulated weight load)."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[_ENGINE] = engine
    app[_STATE] = {
        "model": model,
        "served_model_name": served_model_name,
        "ready": load_seconds <= 0,
        "started": int(time.time()),
        "metrics": EngineMetrics(engine, served_model_name),
    }

    async def lifecycle(app: web.Application) -> Any:
        engine.start()
        loader = None
        if load_seconds > 0:

            async def load() -> None:
                await asyncio.sleep(load_seconds)
                app[_STATE]["ready"] = True

            loader = asyncio.get_running_loop().create_task(load())
        yield
        if loader is not None:
            loader.cancel()
        await engine.stop()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    return app
