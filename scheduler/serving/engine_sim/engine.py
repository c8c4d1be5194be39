"""The simulated engine's core: continuous batching over a KV cache of blocks.

One asyncio task runs engine iterations as vLLM's scheduler does:

- waiting requests are admitted in arrival order while the batch has a free
  seat (`max_num_seqs`) and the KV cache room for the prompt and output
  blocks (kv_cache.BatchLimits; cached prefix blocks are evicted, least
  recently used first, to make room);
- a prompt's leading blocks found in the prefix cache (chained block hashes)
  are not prefilled again;
- each iteration decodes one token for every running sequence and prefills
  prompt chunks within `max_batched_tokens` (chunked prefill); it lasts
  `EnginePerformance.iteration_s(...)` (divided by `speedup`, for tests);
- a finished sequence frees its blocks and leaves its prompt's full blocks
  in the prefix cache.

Figures are kept as vLLM reports them (metrics.py reads `stats`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from scheduler.serving.kv_cache import BatchLimits, PrefixCache, block_hashes, estimate_tokens
from scheduler.serving.performance import EnginePerformance

# What the simulated model "says": words of about one token each.
_VOCABULARY = (
    "the", "model", "serves", "tokens", "from", "a", "simulated", "cache", "of", "blocks",
    "while", "the", "fleet", "scales", "replicas", "on", "load", "and", "keeps", "one",
    "warm", "for", "the", "next", "spike",
)  # fmt: skip


class RequestTooLong(ValueError):
    """A prompt plus its output that no replica of this size can hold."""


@dataclass
class Sequence:
    id: int
    prompt: str
    prompt_tokens: int
    max_tokens: int
    chain: list[int]
    arrived: float
    out: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    blocks: int = 0
    cached_tokens: int = 0
    prefilled: int = 0  # prompt tokens prefilled (cached ones included)
    generated: int = 0
    first_token_at: float | None = None

    @property
    def in_prefill(self) -> bool:
        return self.prefilled < self.prompt_tokens

    @property
    def context(self) -> int:
        return self.prefilled + self.generated


@dataclass
class EngineStats:
    """Counters and gauges in vLLM's sense."""

    running: int = 0
    waiting: int = 0
    kv_usage: float = 0.0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    prefix_queries: int = 0  # prompt tokens looked up in the prefix cache
    prefix_hits: int = 0
    finished: int = 0
    ttft_s: list[float] = field(default_factory=list)  # since the last drain_latencies()
    e2e_s: list[float] = field(default_factory=list)


class SimulatedEngine:
    def __init__(
        self,
        performance: EnginePerformance,
        kv_blocks: int | None = None,
        speedup: float = 1.0,
    ) -> None:
        self.performance = performance
        spec = performance.spec
        self.block_tokens = spec.block_tokens
        self.total_blocks = kv_blocks or performance.kv_capacity_blocks
        if self.total_blocks < 1:
            raise ValueError("the model leaves no room for a KV cache on these GPUs")
        self.limits = BatchLimits(spec.max_num_seqs, self.total_blocks)
        self.max_model_len = min(spec.llm.max_context, self.total_blocks * self.block_tokens)
        self.speedup = speedup
        self.cache = PrefixCache(self.total_blocks)
        self.stats = EngineStats()
        self._waiting: deque[Sequence] = deque()
        self._running: list[Sequence] = []
        self._used_blocks = 0
        self._ids = itertools.count(1)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- requests -----------------------------------------------------------
    def submit(self, prompt: str, max_tokens: int) -> Sequence:
        tokens = max(1, estimate_tokens(prompt))
        if tokens + max_tokens > self.max_model_len:
            raise RequestTooLong(
                f"This model's maximum context length is {self.max_model_len} tokens. "
                f"However, you requested {tokens + max_tokens} tokens "
                f"({tokens} in the messages, {max_tokens} in the completion)."
            )
        sequence = Sequence(
            id=next(self._ids),
            prompt=prompt,
            prompt_tokens=tokens,
            max_tokens=max_tokens,
            chain=block_hashes(prompt, self.block_tokens),
            arrived=time.monotonic(),
        )
        self._waiting.append(sequence)
        self._refresh_gauges()
        self._wake.set()
        return sequence

    async def tokens(self, sequence: Sequence) -> AsyncIterator[str]:
        while True:
            token = await sequence.out.get()
            if token is None:
                return
            yield token

    def cancel(self, sequence: Sequence) -> None:
        """The client went away: free what it holds."""
        if sequence in self._waiting:
            self._waiting.remove(sequence)
        elif sequence in self._running:
            self._finish(sequence, time.monotonic(), completed=False)
        self._refresh_gauges()

    # -- the loop -----------------------------------------------------------
    async def _run(self) -> None:
        while True:
            if not self._waiting and not self._running:
                self._wake.clear()
                await self._wake.wait()
            self._admit()
            duration, prefilling, decoding = self._plan_iteration()
            await asyncio.sleep(duration / self.speedup)
            self._advance(prefilling, decoding)
            self._refresh_gauges()

    def _admit(self) -> None:
        while self._waiting:
            sequence = self._waiting[0]
            needed = -(-(sequence.prompt_tokens + sequence.max_tokens) // self.block_tokens)
            if not self.limits.admits(len(self._running), self._used_blocks, needed):
                return
            self._waiting.popleft()
            matched = self.cache.match(sequence.chain)
            self.cache.touch(sequence.chain, matched)
            # The last prompt token is always computed (its logits start decoding).
            cached = min(matched * self.block_tokens, sequence.prompt_tokens - 1)
            sequence.cached_tokens = sequence.prefilled = cached
            sequence.blocks = needed
            self._used_blocks += needed
            self.cache.resize(self.total_blocks - min(self._used_blocks, self.total_blocks))
            self.stats.prompt_tokens += sequence.prompt_tokens
            self.stats.prefix_queries += sequence.prompt_tokens
            self.stats.prefix_hits += cached
            self._running.append(sequence)

    def _plan_iteration(self) -> tuple[float, list[tuple[Sequence, int]], list[Sequence]]:
        budget = self.performance.spec.max_batched_tokens
        decoding = [s for s in self._running if not s.in_prefill]
        budget -= len(decoding)
        prefilling: list[tuple[Sequence, int]] = []
        flops = 0.0
        for sequence in self._running:
            if not sequence.in_prefill or budget <= 0:
                continue
            chunk = min(sequence.prompt_tokens - sequence.prefilled, budget)
            flops += self.performance.prefill_flops(chunk, sequence.prefilled)
            prefilling.append((sequence, chunk))
            budget -= chunk
        context = sum(s.context for s in decoding)
        duration = self.performance.iteration_s(len(decoding), context, flops)
        return duration, prefilling, decoding

    def _advance(self, prefilling: list[tuple[Sequence, int]], decoding: list[Sequence]) -> None:
        now = time.monotonic()
        for sequence, chunk in prefilling:
            sequence.prefilled += chunk
            if not sequence.in_prefill:  # its first token comes with the last chunk
                self._emit(sequence, now)
        for sequence in decoding:
            self._emit(sequence, now)

    def _emit(self, sequence: Sequence, now: float) -> None:
        if sequence not in self._running:
            return
        word = _VOCABULARY[(sequence.id + sequence.generated) % len(_VOCABULARY)]
        sequence.generated += 1
        self.stats.generation_tokens += 1
        if sequence.first_token_at is None:
            sequence.first_token_at = now
            self.stats.ttft_s.append(now - sequence.arrived)
        sequence.out.put_nowait(" " + word)
        if sequence.generated >= sequence.max_tokens:
            self._finish(sequence, now, completed=True)

    def _finish(self, sequence: Sequence, now: float, completed: bool) -> None:
        self._running.remove(sequence)
        self._used_blocks -= sequence.blocks
        self.cache.resize(self.total_blocks - self._used_blocks)
        self.cache.insert(sequence.chain)
        sequence.out.put_nowait(None)
        if completed:
            self.stats.finished += 1
            self.stats.e2e_s.append(now - sequence.arrived)

    def _refresh_gauges(self) -> None:
        self.stats.running = len(self._running)
        self.stats.waiting = len(self._waiting)
        self.stats.kv_usage = min(1.0, self._used_blocks / self.total_blocks)
