"""The gateway's pure parts: rate limits, the replica list, the watch's messages."""

from __future__ import annotations

import pytest

from gpupool.v1 import deployments_pb2 as pb
from scheduler.domain.errors import InvalidArgument
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


def test_replica_speed_comes_from_the_performance_model() -> None:
    h100 = replica_speed(
        ReplicaUpdate("r", "d", "t", "ready", model="llama-3.1-8b", gpu_model="H100-80GB")
    )
    b200 = replica_speed(
        ReplicaUpdate("r", "d", "t", "ready", model="llama-3.1-8b", gpu_model="B200")
    )
    assert b200.prefill_tokens_per_s > 2 * h100.prefill_tokens_per_s
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
    )
    update = replica_update(message)
    assert (update.state, update.gpu_count, update.variant) == ("draining", 2, "fp16")
    assert update.metrics is not None and update.metrics.num_requests_waiting == 1
    assert replica_update(pb.Replica(id="r2")).metrics is None
