"""The router's bookkeeping: in-flight accounting, sessions with a TTL, exclusion."""

from __future__ import annotations

from typing import Any

import pytest

from scheduler.domain.errors import InvalidArgument
from scheduler.routing.router import OutputEstimator, Router, speed_of
from scheduler.routing.view import EngineMetrics
from scheduler.serving.performance import engine_performance

H100 = speed_of(engine_performance("H100-80GB", "llama-3.1-8b"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def router(policy: str = "weighted", **kwargs: Any) -> Router:
    r = Router(policy, **kwargs)
    for rid in ("a", "b"):
        r.upsert_replica(rid, state="ready", speed=H100, endpoint=f"{rid}:1")
    return r


def test_route_books_work_and_feedback_releases_it() -> None:
    r = router("token_load")
    decision, ticket = r.route(r.request(4000, max_tokens=100))
    assert ticket is not None and decision.replica == ticket.replica
    load = r.replica(ticket.replica).load  # type: ignore[union-attr]
    assert (load.in_flight, load.pending_prefill_tokens, load.pending_output_tokens) == (
        1,
        4000,
        100,
    )
    assert load.pending_prefill_s == pytest.approx(H100.prefill_s(4000))
    # The next request goes to the other replica: this one has work queued.
    assert r.route(r.request(4000))[0].replica != ticket.replica
    r.first_token(ticket)
    assert load.pending_prefill_tokens == 0 and load.pending_prefill_s == 0
    r.generated(ticket, 40)
    assert load.pending_output_tokens == 60
    r.finish(ticket, output_tokens=50)
    r.finish(ticket, output_tokens=50)  # twice is harmless
    assert (load.in_flight, load.pending_output_tokens) == (0, 0)


def test_expected_output_is_max_tokens_capped_by_the_running_mean() -> None:
    outputs = OutputEstimator(initial=100)
    assert outputs.expect(None) == 100
    assert outputs.expect(30) == 30
    assert outputs.expect(5000) == 100
    for _ in range(200):
        outputs.observe(1000)
    assert 990 <= outputs.expect(None) <= 1000


def test_session_binding_expires_after_its_ttl() -> None:
    clock = Clock()
    r = router("session", session_ttl_s=60, clock=clock)
    first, _ = r.route(r.request(100, session="s1"))
    # Load the bound replica: stickiness holds anyway.
    for _ in range(3):
        assert r.route(r.request(100, session="s1"))[0].replica == first.replica
    clock.now += 61
    decision, _ = r.route(r.request(100, session="s1"))
    assert decision.replica != first.replica
    assert decision.reason.startswith("session unbound")


def test_an_unhealthy_replica_is_excluded_until_healthy_and_loses_its_cache() -> None:
    r = router("prefix", block_tokens=16)
    blocks = list(range(10))
    decision, _ = r.route(r.request(160, blocks=blocks))
    warm = decision.replica
    assert warm is not None
    assert r.route(r.request(160, blocks=blocks))[0].replica == warm
    r.set_healthy(warm, False)
    assert r.route(r.request(160, blocks=blocks))[0].replica != warm
    r.set_healthy(warm, True)
    assert r.context.prefix.overlap(warm, blocks) == 0


def test_metrics_and_removal_change_the_views() -> None:
    r = router()
    r.set_metrics("a", EngineMetrics(kv_cache_usage=0.99, num_requests_waiting=4))
    assert r.replica("a").metrics.num_requests_waiting == 4  # type: ignore[union-attr]
    decision, _ = r.route(r.request(100))
    assert decision.replica == "b"
    r.remove_replica("b")
    r.remove_replica("b")
    assert [v.id for v in r.views()] == ["a"]
    r.upsert_replica("a", state="draining", speed=H100)
    decision, ticket = r.route(r.request(100))
    assert ticket is None and decision.replica is None


def test_decisions_are_counted_per_policy_and_replica() -> None:
    r = router("round_robin")
    for _ in range(4):
        r.route(r.request(10))
    assert r.decisions == {("round_robin", "a"): 2, ("round_robin", "b"): 2}


def test_unknown_policy_names_the_field() -> None:
    with pytest.raises(InvalidArgument, match="policy 'fastest'"):
        Router("fastest")
