"""The simulated engine: batching, KV blocks, prefix cache, its OpenAI API
and vLLM metrics (asyncio, no network beyond aiohttp's loopback test server)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agent.engine_metrics import parse_metrics
from scheduler.serving.engine_sim.engine import RequestTooLong, SimulatedEngine
from scheduler.serving.engine_sim.server import create_app
from scheduler.serving.performance import engine_performance

PROMPT = "You are a helpful assistant. " * 40  # 1,160 characters: 18 full blocks of 64


def _engine(**knobs: Any) -> SimulatedEngine:
    kv_blocks = knobs.pop("kv_blocks", None)
    performance = engine_performance("H100-80GB", "llama-3.1-8b", **knobs)
    # 1000× faster than the GPU: tests take milliseconds, the arithmetic is the same.
    return SimulatedEngine(performance, kv_blocks=kv_blocks, speedup=1000.0)


def _run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout=30))


def test_a_repeated_prompt_hits_the_prefix_cache() -> None:
    async def body() -> None:
        engine = _engine()
        engine.start()
        first = engine.submit(PROMPT, 4)
        assert len([t async for t in engine.tokens(first)]) == 4
        second = engine.submit(PROMPT, 4)
        _ = [t async for t in engine.tokens(second)]
        await engine.stop()
        assert first.cached_tokens == 0
        # Every full block but the last token is reused.
        assert second.cached_tokens == min(18 * 16, second.prompt_tokens - 1)
        assert engine.stats.prefix_hits == second.cached_tokens
        assert engine.stats.prompt_tokens == 2 * first.prompt_tokens
        assert engine.stats.generation_tokens == 8

    _run(body)


def test_the_batch_is_bounded_and_the_rest_waits() -> None:
    async def body() -> None:
        engine = _engine(max_num_seqs=2)
        engine.start()
        sequences = [engine.submit(f"request {i} " * 10, 50) for i in range(5)]
        await asyncio.sleep(0)  # one admission pass
        await asyncio.sleep(0.001)
        assert engine.stats.running <= 2
        assert engine.stats.running + engine.stats.waiting == 5
        for sequence in sequences:
            assert len([t async for t in engine.tokens(sequence)]) == 50
        await engine.stop()
        assert engine.stats.finished == 5 and engine.stats.running == 0

    _run(body)


def test_kv_use_counts_blocks_of_running_sequences_and_full_cache_waits() -> None:
    async def body() -> None:
        engine = _engine(kv_blocks=10)  # 160 tokens of KV in all
        engine.start()
        big = engine.submit("x" * 400, 20)  # 100 + 20 tokens: 8 blocks
        other = engine.submit("y" * 400, 20)  # does not fit beside it
        # Wait for the first iteration to admit `big` (a busy machine may take a while;
        # `big` then runs for 20 iterations of the performance model's time).
        for _ in range(2000):
            if engine.stats.kv_usage:
                break
            await asyncio.sleep(0.001)
        assert engine.stats.kv_usage == pytest.approx(0.8)
        assert engine.stats.waiting == 1
        _ = [t async for t in engine.tokens(big)]
        _ = [t async for t in engine.tokens(other)]
        await engine.stop()
        assert engine.stats.kv_usage == 0.0
        with pytest.raises(RequestTooLong):
            engine.submit("z" * 800, 1)

    _run(body)


def test_iteration_time_is_the_performance_model() -> None:
    engine = _engine()
    performance = engine.performance
    # Nothing queued: an empty iteration is the model's overhead plus reading the weights.
    duration, prefilling, decoding = engine._plan_iteration()
    assert (prefilling, decoding) == ([], [])
    assert duration == pytest.approx(performance.iteration_s(0, 0, 0.0))


def test_openai_api_streams_and_metrics_use_vllm_names() -> None:
    async def body() -> None:
        app = create_app(_engine(), "llama-3.1-8b", "chat")
        async with TestClient(TestServer(app)) as client:
            health = await client.get("/health")
            assert health.status == 200
            models = await (await client.get("/v1/models")).json()
            assert models["data"][0]["id"] == "chat"
            answer = await client.post(
                "/v1/completions", json={"model": "chat", "prompt": PROMPT, "max_tokens": 5}
            )
            completion = await answer.json()
            assert completion["usage"]["completion_tokens"] == 5
            assert completion["choices"][0]["text"]
            stream = await client.post(
                "/v1/chat/completions",
                json={
                    "model": "chat",
                    "messages": [{"role": "user", "content": "hello"}],
                    "max_tokens": 3,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                },
            )
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            events = [
                line.removeprefix("data: ")
                for line in (await stream.text()).splitlines()
                if line.startswith("data: ")
            ]
            assert events[-1] == "[DONE]"
            chunks = [json.loads(e) for e in events[:-1]]
            text = "".join(
                c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]
            )
            assert len(text.split()) == 3
            assert chunks[-1]["usage"]["completion_tokens"] == 3
            wrong = await client.post("/v1/completions", json={"model": "other", "prompt": "x"})
            assert wrong.status == 404
            too_long = await client.post(
                "/v1/completions", json={"model": "chat", "prompt": "x", "max_tokens": 10**7}
            )
            assert too_long.status == 400
            page = await (await client.get("/metrics")).text()
        figures = parse_metrics(page)
        assert figures.generation_tokens_total == 8
        assert figures.prompt_tokens_total > 290  # 290 of PROMPT, a few of the chat
        assert figures.num_requests_running == 0 and figures.kv_cache_usage == 0.0
        assert 'vllm:kv_cache_usage_perc{model_name="chat"}' in page

    _run(body)


def test_health_is_503_while_loading() -> None:
    async def body() -> None:
        app = create_app(_engine(), "llama-3.1-8b", "chat", load_seconds=60)
        async with TestClient(TestServer(app)) as client:
            assert (await client.get("/health")).status == 503
            busy = await client.post("/v1/completions", json={"prompt": "x"})
            assert busy.status == 503

    _run(body)
