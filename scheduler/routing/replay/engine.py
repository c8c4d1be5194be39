"""A replica of the simulated engine as a discrete-event (fluid) model, for replay.

The same semantics as the live simulated engine, computed between events
instead of step by step so an hour of trace replays in seconds:

- admission (scheduler/serving/kv_cache.BatchLimits): FIFO; at most
  max_num_seqs running and the KV cache must hold the prompt and its output;
- prefix cache (kv_cache.PrefixCache): the longest cached run of the
  prompt's block chain is reused at admission; the prompt's blocks are cached
  once it is prefilled; LRU eviction within what running outputs leave free;
- iterations (scheduler/serving/performance.EnginePerformance.iteration_s):
  each step decodes one token of every running sequence alongside a chunk of
  prefill of up to max_batched_tokens minus the running sequences; prompts
  are prefilled in admission order. Between two events the step time is
  constant, so progress is linear in time and the next event is computed,
  not stepped to.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field

from scheduler.serving.kv_cache import BatchLimits, PrefixCache
from scheduler.serving.performance import EnginePerformance

_EPS = 1e-9
# Prefill left that counts as done (float rounding of event times).
_DONE_TOKENS = 1e-3


@dataclass
class Job:
    """One request inside a replica."""

    index: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    blocks: tuple[int, ...]
    hit_tokens: int = 0
    remaining_prefill: float = 0.0  # tokens
    prefill_flops_per_token: float = 0.0
    reserved_tokens: int = 0
    first_token_s: float | None = None
    finish_v: float = 0.0


@dataclass
class SimReplica:
    id: str
    perf: EnginePerformance
    block_tokens: int  # of the trace's block hashes
    now: float = 0.0
    waiting: deque[Job] = field(default_factory=deque)
    prefilling: deque[Job] = field(default_factory=deque)
    decoding: list[tuple[float, int, Job]] = field(default_factory=list)
    used_tokens: int = 0
    reserved_output_tokens: int = 0
    virtual_tokens: float = 0.0  # tokens every running sequence has decoded so far
    context_base: float = 0.0  # Σ(prompt - virtual at join) of decoding jobs
    version: int = 0
    _step_s: float = 0.0
    _prefill_rate: float = 0.0
    _decode_rate: float = 0.0

    def __post_init__(self) -> None:
        total_blocks = self.perf.kv_capacity_tokens // self.block_tokens
        self.cache = PrefixCache(total_blocks)
        self.limits = BatchLimits(self.perf.spec.max_num_seqs, self.perf.kv_capacity_tokens)
        self._total_cache_blocks = total_blocks

    # -- what the outside sees ----------------------------------------------
    @property
    def running(self) -> int:
        return len(self.prefilling) + len(self.decoding)

    def kv_usage(self) -> float:
        return min(1.0, self.used_tokens / max(1, self.perf.kv_capacity_tokens))

    def outstanding_work_s(self) -> float:
        """Hardware-normalised outstanding work: prefill left plus output left."""
        prefill = sum(j.remaining_prefill * j.prefill_flops_per_token for j in self.prefilling)
        prefill += sum(self.perf.prefill_flops(j.prompt_tokens) for j in self.waiting)
        decode_left = sum(max(0.0, f - self.virtual_tokens) for f, _, _ in self.decoding)
        decode_left += sum(j.output_tokens for j in self.prefilling)
        decode_left += sum(j.output_tokens for j in self.waiting)
        return prefill / self.perf.flops_per_s + decode_left * self.perf.decode_s_per_token

    # -- events ---------------------------------------------------------------
    def arrive(self, job: Job, now: float) -> None:
        self.advance(now)
        self.waiting.append(job)

    def advance(self, now: float) -> None:
        """Move progress forward to `now` at the rates fixed at the last event."""
        dt = now - self.now
        if dt <= 0:
            return
        self.now = now
        if self._prefill_rate and self.prefilling:
            self.prefilling[0].remaining_prefill -= dt * self._prefill_rate
        if self._decode_rate:
            self.virtual_tokens += dt * self._decode_rate

    def collect(self) -> tuple[list[Job], list[Job]]:
        """(jobs whose first token is out, jobs finished) at `self.now`; admits waiting jobs."""
        first: list[Job] = []
        done: list[Job] = []
        while self.decoding and self.decoding[0][0] <= self.virtual_tokens + _EPS:
            _, _, job = heapq.heappop(self.decoding)
            self._release(job)
            done.append(job)
        while self.prefilling and self.prefilling[0].remaining_prefill <= _DONE_TOKENS:
            job = self.prefilling.popleft()
            job.first_token_s = self.now
            self.cache.insert(job.blocks)
            self._fit_cache()
            if job.output_tokens <= 1:
                self._release(job)
                first.append(job)
                done.append(job)
                continue
            # The first token came with the prefill; the rest are decode steps.
            job.finish_v = self.virtual_tokens + job.output_tokens - 1
            self.context_base += job.prompt_tokens - self.virtual_tokens
            heapq.heappush(self.decoding, (job.finish_v, job.index, job))
            first.append(job)
        self._admit()
        return first, done

    def _release(self, job: Job) -> None:
        self.used_tokens -= job.reserved_tokens
        self.reserved_output_tokens -= job.output_tokens
        if job.first_token_s is not None and job.output_tokens > 1:
            self.context_base -= job.prompt_tokens - (job.finish_v - job.output_tokens + 1)
        self._fit_cache()

    def _fit_cache(self) -> None:
        # Running outputs take KV blocks the cache can no longer keep.
        free = self._total_cache_blocks - self.reserved_output_tokens // self.block_tokens
        self.cache.shrink_to(free)

    def _admit(self) -> None:
        while self.waiting:
            job = self.waiting[0]
            need = job.prompt_tokens + job.output_tokens
            if not self.limits.admits(self.running, self.used_tokens, need):
                return
            self.waiting.popleft()
            matched = self.cache.match(job.blocks)
            self.cache.touch(job.blocks, matched)
            # Keep the last prompt token uncached: the engine recomputes it for logits.
            job.hit_tokens = min(matched * self.block_tokens, job.prompt_tokens - 1)
            new = job.prompt_tokens - job.hit_tokens
            job.remaining_prefill = float(new)
            job.prefill_flops_per_token = self.perf.prefill_flops(new, job.hit_tokens) / new
            job.reserved_tokens = need
            self.used_tokens += need
            self.reserved_output_tokens += job.output_tokens
            self.prefilling.append(job)
            self._fit_cache()

    def next_event_s(self) -> float | None:
        """Fix the rates for the current state and return when the next event happens."""
        b = len(self.decoding)
        context = self.context_base + b * self.virtual_tokens
        spec = self.perf.spec
        self._prefill_rate = 0.0
        self._decode_rate = 0.0
        if not self.prefilling and not b:
            return None
        chunk = 0.0
        flops = 0.0
        if self.prefilling:
            budget = max(spec.max_batched_tokens - b, spec.max_batched_tokens // 8)
            pending = sum(j.remaining_prefill for j in self.prefilling)
            chunk = min(float(budget), pending)
            flops = chunk * self.prefilling[0].prefill_flops_per_token
        step = self.perf.iteration_s(b, int(context), flops)
        self._step_s = step
        times: list[float] = []
        if chunk > 0:
            self._prefill_rate = chunk / step
            times.append(
                self.now + max(0.0, self.prefilling[0].remaining_prefill) / self._prefill_rate
            )
        if b:
            self._decode_rate = 1.0 / step
            left = max(0.0, self.decoding[0][0] - self.virtual_tokens)
            times.append(self.now + left * step)
        self.version += 1
        return min(times)
