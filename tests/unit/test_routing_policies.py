"""Each routing policy's rules, as pure tests over replica views."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from scheduler.routing.policies import (
    POLICIES,
    PolicyConfig,
    RoutingContext,
    least_request,
    prefix,
    round_robin,
    saturated,
    session,
    token_load,
    weighted,
)
from scheduler.routing.prefix_index import PrefixIndex
from scheduler.routing.router import speed_of
from scheduler.routing.view import (
    EngineMetrics,
    ReplicaLoad,
    ReplicaSpeed,
    ReplicaView,
    RouteRequest,
)
from scheduler.serving.performance import engine_performance

A100 = speed_of(engine_performance("A100-80GB", "llama-3.1-8b"))
H100 = speed_of(engine_performance("H100-80GB", "llama-3.1-8b"))
B200 = speed_of(engine_performance("B200", "llama-3.1-8b"))


def replica(
    rid: str,
    *,
    speed: ReplicaSpeed = H100,
    state: str = "ready",
    healthy: bool = True,
    in_flight: int = 0,
    prefill_s: float = 0.0,
    output: int = 0,
    kv: float = 0.0,
    waiting: int = 0,
    running: int | None = None,
) -> ReplicaView:
    load = ReplicaLoad(
        in_flight=in_flight, pending_prefill_s=prefill_s, pending_output_tokens=output
    )
    metrics = EngineMetrics(kv, in_flight if running is None else running, waiting)
    return ReplicaView(rid, state, speed, load, healthy=healthy, metrics=metrics)


def request(
    prompt: int = 2000,
    output: int = 100,
    blocks: Iterable[int] = (),
    session_id: str | None = None,
    block_tokens: int = 16,
) -> RouteRequest:
    return RouteRequest(prompt, output, tuple(blocks), block_tokens, session_id)


def ctx(**config: Any) -> RoutingContext:
    return RoutingContext(config=PolicyConfig(**config), prefix=PrefixIndex())


def warm(context: RoutingContext, rid: str, blocks: Iterable[int], capacity: int = 10_000) -> None:
    context.prefix.ensure(rid, capacity)
    context.prefix.record(rid, list(blocks))


UNROUTABLE = [
    replica("starting", state="starting"),
    replica("standby", state="standby"),
    replica("draining", state="draining"),
    replica("stopped", state="stopped"),
    replica("sick", healthy=False),
]


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_no_policy_ever_chooses_an_unroutable_replica(name: str) -> None:
    policy = POLICIES[name]
    context = ctx()
    for rid in ("starting", "standby", "draining", "stopped", "sick"):
        warm(context, rid, range(100))
    decision = policy(request(blocks=range(100), session_id="s"), UNROUTABLE, context)
    assert decision.replica is None
    assert "no routable replica" in decision.reason
    assert "draining" in decision.reason and "unhealthy" in decision.reason
    decision = policy(
        request(blocks=range(100)), [*UNROUTABLE, replica("ok", in_flight=50)], context
    )
    assert decision.replica == "ok"
    assert decision.policy == name


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_an_empty_pool_has_no_decision(name: str) -> None:
    decision = POLICIES[name](request(), [], ctx())
    assert decision.replica is None
    assert decision.reason.endswith("no replicas")


def test_round_robin_takes_turns_in_id_order() -> None:
    replicas = [replica("c"), replica("a"), replica("b", state="draining"), replica("d")]
    context = ctx()
    chosen = []
    for _ in range(4):
        chosen.append(round_robin(request(), replicas, context).replica)
        context.round_robin_counter += 1
    assert chosen == ["a", "c", "d", "a"]


def test_least_request_counts_requests_not_tokens() -> None:
    replicas = [replica("busy", in_flight=3), replica("long", in_flight=1, prefill_s=100.0)]
    decision = least_request(request(), replicas, ctx())
    assert decision.replica == "long"
    assert decision.scores["long"]["in_flight"] == 1


def test_token_load_normalises_by_hardware() -> None:
    # The same queued work (in tokens) is 7× shorter on a B200 than on an A100.
    tokens = 20_000
    a100 = replica("a100", speed=A100, prefill_s=A100.prefill_s(tokens), in_flight=1)
    b200 = replica("b200", speed=B200, prefill_s=B200.prefill_s(tokens), in_flight=1)
    decision = token_load(request(), [a100, b200], ctx())
    assert decision.replica == "b200"
    assert decision.scores["b200"]["cost_s"] < decision.scores["a100"]["cost_s"]


def test_token_load_weighs_output_tokens_by_decode_cost() -> None:
    # Equal pending prefill; one has 10,000 output tokens still to decode.
    decoding = replica("decoding", prefill_s=0.1, output=10_000)
    idle = replica("idle", prefill_s=0.1)
    decision = token_load(request(), [decoding, idle], ctx())
    assert decision.replica == "idle"
    expected = 0.1 + 10_000 * H100.decode_s_per_token
    assert decision.scores["decoding"]["load_s"] == pytest.approx(expected)


def test_prefix_follows_the_longest_cached_prefix() -> None:
    context = ctx()
    warm(context, "short", range(3))
    warm(context, "long", range(8))
    replicas = [replica("cold"), replica("short"), replica("long")]
    decision = prefix(request(prompt=160, blocks=range(10)), replicas, context)
    assert decision.replica == "long"
    assert decision.expected_hit_blocks == 8
    assert "longest cached prefix (8 of 10 blocks)" in decision.reason


def test_prefix_below_the_share_threshold_routes_by_load() -> None:
    context = ctx(prefix_min_share=0.3)
    warm(context, "warm", range(2))
    replicas = [replica("warm", prefill_s=1.0), replica("cold")]
    decision = prefix(request(prompt=160, blocks=range(10)), replicas, context)
    assert decision.replica == "cold"
    assert "no replica holds 30% of the prefix (best 20%)" in decision.reason


def test_prefix_affinity_breaks_when_the_warm_replica_is_saturated() -> None:
    context = ctx()
    warm(context, "warm", range(10))
    replicas = [replica("warm", kv=0.99, waiting=3), replica("cold")]
    decision = prefix(request(prompt=160, blocks=range(10)), replicas, context)
    assert decision.replica == "cold"
    assert "saturated" in decision.reason


def test_prefix_affinity_breaks_past_the_ttft_penalty() -> None:
    context = ctx(prefix_penalty_s=1.0)
    warm(context, "warm", range(10))
    slow = [replica("warm", prefill_s=5.0), replica("cold")]
    decision = prefix(request(prompt=160, blocks=range(10)), slow, context)
    assert decision.replica == "cold"
    assert "penalty" in decision.reason
    tolerable = [replica("warm", prefill_s=0.5), replica("cold")]
    assert prefix(request(prompt=160, blocks=range(10)), tolerable, context).replica == "warm"


def test_session_sticks_while_bound_and_usable() -> None:
    context = ctx()
    context.sessions = {"alice": "b"}
    replicas = [replica("a"), replica("b", in_flight=5, prefill_s=3.0)]
    decision = session(request(session_id="alice"), replicas, context)
    assert decision.replica == "b"
    assert decision.reason == "session affinity"


def test_session_falls_back_when_its_replica_drains_or_is_saturated() -> None:
    context = ctx()
    context.sessions = {"alice": "b", "bob": "c"}
    replicas = [replica("a"), replica("b", state="draining"), replica("c", in_flight=300)]
    assert session(request(session_id="alice"), replicas, context).replica == "a"
    decision = session(request(session_id="bob"), replicas, context)
    assert decision.replica == "a"
    assert decision.reason.startswith("session unbound or its replica unusable")
    assert session(request(), replicas, context).reason.startswith("no session")


def test_saturation_needs_a_full_cache_with_a_queue_or_a_full_batch() -> None:
    config = PolicyConfig()
    assert not saturated(replica("r", kv=0.99), config)
    assert saturated(replica("r", kv=0.99, waiting=1), config)
    assert saturated(replica("r", in_flight=H100.max_num_seqs), config)


def test_weighted_skips_saturated_replicas_unless_all_are() -> None:
    context = ctx()
    warm(context, "full", range(10))
    replicas = [replica("full", kv=0.99, waiting=2), replica("free", prefill_s=2.0)]
    decision = weighted(request(prompt=160, blocks=range(10)), replicas, context)
    assert decision.replica == "free"
    assert "1 saturated skipped" in decision.reason
    only_full = [replica("full", kv=0.99, waiting=2), replica("full2", kv=0.99, waiting=9)]
    decision = weighted(request(prompt=160, blocks=range(10)), only_full, context)
    assert decision.replica == "full"
    assert "all saturated" in decision.reason


def test_weighted_prefers_the_warm_replica_and_explains_its_scores() -> None:
    context = ctx()
    blocks = range(8)
    warm(context, "warm", blocks)
    replicas = [replica("warm", prefill_s=0.2), replica("cold")]
    decision = weighted(request(prompt=8 * 512, blocks=blocks, block_tokens=512), replicas, context)
    assert decision.replica == "warm"
    scores = decision.scores["warm"]
    assert scores["overlap_blocks"] == 8
    assert scores["prefill_s"] < decision.scores["cold"]["prefill_s"]
    assert set(scores) == {"overlap_blocks", "load_s", "prefill_s", "queue_s", "cost_s"}
    assert "policy=weighted; replica=warm" in decision.header()


def test_weighted_leaves_a_warm_replica_that_is_far_behind() -> None:
    context = ctx(prefix_penalty_s=1.0)
    blocks = range(8)
    warm(context, "warm", blocks)
    replicas = [replica("warm", prefill_s=30.0), replica("cold")]
    decision = weighted(request(prompt=8 * 512, blocks=blocks, block_tokens=512), replicas, context)
    assert decision.replica == "cold"


def test_weighted_counts_engine_queues_this_router_did_not_fill() -> None:
    # Another gateway filled "shared": the engine reports 20 waiting, we sent none.
    replicas = [replica("shared", waiting=20, running=0), replica("other", prefill_s=0.01)]
    decision = weighted(request(), replicas, ctx())
    assert decision.replica == "other"
    assert decision.scores["shared"]["queue_s"] > 0


def test_weighted_without_prefixes_is_hardware_aware_least_work() -> None:
    a100 = replica("a100", speed=A100)
    b200 = replica("b200", speed=B200, prefill_s=0.05)
    assert weighted(request(prompt=8000), [a100, b200], ctx()).replica == "b200"
    busy = replica("b200", speed=B200, prefill_s=10.0)
    assert weighted(request(prompt=8000), [a100, busy], ctx()).replica == "a100"


def test_quality_equivalent_variants_are_one_pool_with_their_own_speeds() -> None:
    fp16 = speed_of(engine_performance("H100-80GB", "llama-3.1-70b", dtype="fp16", gpu_count=2))
    int4 = speed_of(engine_performance("A100-80GB", "llama-3.1-70b", dtype="int4"))
    pool = [
        ReplicaView("h100-fp16", "ready", fp16, ReplicaLoad(), variant="fp16"),
        ReplicaView("a100-int4", "ready", int4, ReplicaLoad(), variant="int4"),
    ]
    decision = token_load(request(prompt=4000), pool, ctx())
    assert decision.replica == "h100-fp16"  # faster prefill
    assert set(decision.scores) == {"h100-fp16", "a100-int4"}
