"""The gateway's pure parts: rate limits, the replica list, the watch's messages."""

from __future__ import annotations

import asyncio
import time
from typing import cast

import pytest

from gpupool.v1 import deployments_pb2 as pb
from scheduler.domain.callers import Caller, Role
from scheduler.domain.errors import InvalidArgument, Unauthenticated
from scheduler.gateway.auth import REFRESH_AFTER_S, TokenAuthenticator
from scheduler.gateway.limits import Limits, TenantLimiter
from scheduler.gateway.replicas import (
    Pools,
    ReplicaUpdate,
    Resync,
    Synced,
    read_replicas_file,
    replica_speed,
)
from scheduler.gateway.watch import replica_update
from scheduler.services.tokens import TokenService


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_request_bucket_refills_and_says_when() -> None:
    clock = Clock()
    limiter = TenantLimiter(Limits(requests_per_minute=2), clock=clock)
    assert limiter.admit("a", 10) == 0
    assert limiter.admit("a", 10) == 0
    assert limiter.admit("a", 10) == 30  # one request per 30 s
    assert limiter.admit("b", 10) == 0  # per tenant
    clock.now = 30.0
    assert limiter.admit("a", 10) == 0


def test_token_bucket_charges_tokens_and_caps_big_requests() -> None:
    clock = Clock()
    limiter = TenantLimiter(Limits(tokens_per_minute=600), {"vip": Limits()}, clock=clock)
    assert limiter.admit("a", 500) == 0
    assert limiter.admit("a", 200) == 10  # 100 missing at 10 tokens/s
    assert limiter.admit("a", 10_000) == 50  # waits for a full bucket, not forever
    assert limiter.admit("vip", 10**9) == 0  # unlimited


def test_pools_follow_snapshots_and_scope_by_tenant() -> None:
    pools = Pools()
    for rid, tenant, name in (("r1", "t1", "chat"), ("r2", "t1", "chat"), ("r3", "t2", "chat")):
        pools.apply(ReplicaUpdate(rid, name, tenant, "ready", f"h:{rid[1]}", "llama-3.1-8b"))
    pools.apply(Synced())
    assert pools.synced.is_set()
    mine = pools.find("chat", "t1")
    assert mine is not None and {v.id for v in mine.router.views()} == {"r1", "r2"}
    assert pools.find("llama-3.1-8b", "t1") is mine  # by the model it serves
    assert pools.find("chat", None) is None  # two tenants' "chat": ambiguous for an admin
    assert pools.find("t2/chat", None) is pools.find("chat", "t2") is not None
    assert pools.find("chat", "t3") is None
    # A new snapshot without r2 drops it; a stopped replica goes at once.
    pools.apply(Resync())
    pools.apply(ReplicaUpdate("r1", "chat", "t1", "ready", "h:1", "llama-3.1-8b"))
    pools.apply(ReplicaUpdate("r3", "chat", "t2", "stopped"))
    pools.apply(Synced())
    assert [v.id for v in mine.router.views()] == ["r1"]
    other = pools.find("chat", "t2")
    assert other is not None and other.router.views() == []


def test_a_deployments_own_routing_wins_over_the_gateways_flags() -> None:
    pools = Pools(policies={"batch": "least_request"}, default_policy="weighted")
    pools.apply(ReplicaUpdate("r1", "chat", "t", "ready", "h:1", routing="prefix"))
    pools.apply(ReplicaUpdate("r2", "batch", "t", "ready", "h:2"))
    pools.apply(ReplicaUpdate("r3", "other", "t", "ready", "h:3"))
    policy = {name: p.router.policy for (_, name), p in pools.pools.items()}
    assert policy == {"chat": "prefix", "batch": "least_request", "other": "weighted"}
    with pytest.raises(InvalidArgument, match="replica 0: policy 'fastest'"):
        read_replicas_file(
            {"replicas": [{"id": "a", "deployment": "d", "tenant": "t", "endpoint": "h:1",
                           "routing": "fastest"}]}
        )  # fmt: skip


def test_replica_speed_comes_from_the_performance_model() -> None:
    h100 = replica_speed(
        ReplicaUpdate("r", "d", "t", "ready", model="llama-3.1-8b", gpu_model="H100-80GB")
    )
    b200 = replica_speed(
        ReplicaUpdate("r", "d", "t", "ready", model="llama-3.1-8b", gpu_model="B200")
    )
    assert b200.prefill_tokens_per_s > h100.prefill_tokens_per_s  # how much: bench/
    int4 = replica_speed(
        ReplicaUpdate(
            "r", "d", "t", "ready", model="llama-3.1-70b", variant="int4", gpu_model="A100-80GB"
        )
    )
    assert int4.kv_capacity_tokens > 0
    unknown = replica_speed(
        ReplicaUpdate("r", "d", "t", "ready", model="my-own-model", gpu_model="B200")
    )
    assert unknown.prefill_tokens_per_s == pytest.approx(10_000 * 2.5)


def test_replicas_file() -> None:
    updates = read_replicas_file(
        {
            "replicas": [
                {
                    "id": "e0",
                    "deployment": "d",
                    "tenant": "t",
                    "endpoint": "127.0.0.1:1",
                    "gpu_count": 2,
                },
            ]
        }
    )
    assert updates[0].state == "ready" and updates[0].gpu_count == 2
    for bad in (
        {},
        {"replicas": [{"id": "x"}]},
        {
            "replicas": [
                {"id": "x", "deployment": "d", "tenant": "t", "endpoint": "e", "colour": "red"}
            ]
        },
    ):
        with pytest.raises(InvalidArgument):
            read_replicas_file(bad)


def test_watch_messages_become_updates() -> None:
    message = pb.Replica(
        id="r1",
        deployment="chat",
        tenant="t",
        state=pb.REPLICA_STATE_DRAINING,
        endpoint="10.0.0.1:8000",
        gpu_model="H100-80GB",
        gpu_count=2,
        model="m",
        variant="fp16",
        metrics=pb.ReplicaMetrics(
            kv_cache_usage=0.5, num_requests_running=3, num_requests_waiting=1
        ),
        routing="prefix",
    )
    update = replica_update(message)
    assert (update.state, update.gpu_count, update.variant) == ("draining", 2, "fp16")
    assert update.routing == "prefix"
    assert update.metrics is not None and update.metrics.num_requests_waiting == 1
    assert replica_update(pb.Replica(id="r2")).metrics is None


class CountingTokens:
    """A TokenService stand-in: each check takes a moment and is counted."""

    def __init__(self) -> None:
        self.checks = 0
        self.revoked = False

    def authenticate(self, token: str, peer: str) -> Caller:
        self.checks += 1
        time.sleep(0.05)
        if self.revoked:
            raise Unauthenticated("token revoked")
        return Caller(name="svc", role=Role.SERVICE, tenant="acme", credential="token t1")


def test_token_checks_are_shared_and_refreshed_in_the_background() -> None:
    clock = Clock()
    tokens = CountingTokens()
    auth = TokenAuthenticator(cast(TokenService, tokens), clock=clock)

    async def scenario() -> None:
        # Twenty requests that miss together: one check.
        callers = await asyncio.gather(*(auth.authenticate("gpp_x", "p") for _ in range(20)))
        assert {c.tenant for c in callers} == {"acme"}
        assert tokens.checks == 1
        # Past half its life the entry is still used, and re-checked once meanwhile.
        clock.now = REFRESH_AFTER_S + 0.1
        await asyncio.gather(*(auth.authenticate("gpp_x", "p") for _ in range(5)))
        assert len(auth._checks) == 1  # one re-check started, nobody waited for it
        while auth._checks:
            await asyncio.sleep(0.01)
        assert tokens.checks == 2
        # A check that finds the token revoked drops it: the next request is refused.
        tokens.revoked = True
        clock.now = 2 * REFRESH_AFTER_S + 0.2
        await auth.authenticate("gpp_x", "p")  # served from the cache; re-checks
        while auth._checks:
            await asyncio.sleep(0.01)
        with pytest.raises(Unauthenticated):
            await auth.authenticate("gpp_x", "p")

    asyncio.run(scenario())
