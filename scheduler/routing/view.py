"""The plain values routing policies decide over: replicas, a request, a decision.

A `ReplicaView` is what the router knows of one replica at decision time:
its state and health (from the scheduler's watch stream), its hardware speed
(from scheduler/serving/performance.py), the engine's last scraped metrics,
and the router's own in-flight accounting (which is fresh, unlike metrics).
Policies never see a socket or a database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

# Replica states that may receive new requests; starting, standby, draining and
# stopped replicas never do.
ROUTABLE_STATES = frozenset({"ready"})


@dataclass(frozen=True)
class ReplicaSpeed:
    """A replica's hardware speed, from the performance model."""

    prefill_tokens_per_s: float
    # GPU seconds one output token costs at a full batch (its marginal decode cost).
    decode_s_per_token: float
    kv_capacity_tokens: int
    max_num_seqs: int = 256
    # Causal attention's share of prefill: seconds per (token²) of context.
    attention_s_per_token2: float = 0.0

    def prefill_s(self, new_tokens: int, cached_tokens: int = 0) -> float:
        """Seconds to prefill `new_tokens` after `cached_tokens` (performance.py formula)."""
        end = cached_tokens + new_tokens
        return new_tokens / self.prefill_tokens_per_s + self.attention_s_per_token2 * (
            end * end - cached_tokens * cached_tokens
        )


@dataclass
class ReplicaLoad:
    """The router's own accounting of what it sent a replica and has not seen finish."""

    in_flight: int = 0
    # Prompt tokens not yet prefilled (the cache hit expected at routing time removed).
    pending_prefill_tokens: int = 0
    # GPU seconds of that prefill on this replica (attention included).
    pending_prefill_s: float = 0.0
    # Output tokens expected but not yet generated.
    pending_output_tokens: int = 0
    # in_flight when the engine's metrics were last taken: what the engine reports
    # beyond it came from elsewhere (other gateway replicas).
    in_flight_at_metrics: int = 0


@dataclass(frozen=True)
class EngineMetrics:
    """The engine's own figures (vLLM names), as last scraped; may be seconds old."""

    kv_cache_usage: float = 0.0
    num_requests_running: int = 0
    num_requests_waiting: int = 0


@dataclass(frozen=True)
class ReplicaView:
    id: str
    state: str
    speed: ReplicaSpeed
    load: ReplicaLoad
    endpoint: str = ""
    gpu_model: str = ""
    variant: str = ""
    healthy: bool = True
    metrics: EngineMetrics = field(default_factory=EngineMetrics)
    # Ready and healthy: computed once per view (policies read it for every replica
    # on every request; a view is replaced, never changed, when either changes).
    routable: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "routable", self.healthy and self.state in ROUTABLE_STATES)

    def pending_work_s(self) -> float:
        """Hardware-normalised outstanding work: pending prefill time plus pending
        output tokens at this replica's decode cost."""
        return (
            self.load.pending_prefill_s
            + self.load.pending_output_tokens * self.speed.decode_s_per_token
        )


@dataclass(frozen=True)
class RouteRequest:
    """What a policy knows of one request before it runs."""

    prompt_tokens: int
    # Expected output tokens: max_tokens capped by the running distribution of actual outputs.
    expected_output_tokens: int
    # Chained block hashes of the prompt's head (scheduler/serving/kv_cache.py).
    blocks: Sequence[int] = ()
    block_tokens: int = 16
    session: str | None = None


@dataclass(frozen=True)
class Decision:
    """A chosen replica (or none), the policy that chose it and why."""

    policy: str
    replica: str | None
    reason: str
    # Per replica: named score components (lower cost is better unless noted).
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    # Blocks of the prompt the chosen replica is expected to have cached.
    expected_hit_blocks: int = 0

    def header(self) -> str:
        """The `x-gpupool-route` value: policy, replica, reason and the chosen replica's scores."""
        mine = self.scores.get(self.replica or "", {})
        parts = [f"policy={self.policy}", f"replica={self.replica or '-'}"]
        parts += [f"{k}={v:.4g}" for k, v in mine.items()]
        parts.append(f"reason={self.reason}")
        return "; ".join(parts)


def routable(replicas: Sequence[ReplicaView]) -> list[ReplicaView]:
    return [r for r in replicas if r.routable]
