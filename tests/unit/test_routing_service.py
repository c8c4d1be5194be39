"""The Router service's replica feed: it follows the scheduler's replica watch."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from scheduler.domain.callers import SYSTEM, Caller
from scheduler.routing.service import RoutingService


def row(replica_id: str) -> dict[str, Any]:
    return {
        "id": replica_id,
        "deployment": "chat",
        "tenant": "acme",
        "state": "ready",
        "endpoint": f"10.0.0.{replica_id[-1]}:8000",
        "model": "llama-3.1-8b",
        "variant": "",
        "gpu_model": "H100-80GB",
        "gpu_count": 1,
    }


def test_the_feed_resyncs_after_a_database_error() -> None:
    """A replica that went away while the feed was down is dropped by the next snapshot."""
    calls = 0
    second_snapshot = threading.Event()

    def feed(
        caller: Caller, deployment: str, tenant: str, active: Callable[[], bool]
    ) -> Iterator[Mapping[str, Any] | None]:
        nonlocal calls
        calls += 1
        if calls == 1:
            yield row("r1")
            yield row("r2")
            yield None
            raise ConnectionError("the database went away")
        yield row("r1")  # r2 was deleted meanwhile
        yield None
        second_snapshot.set()
        while active():
            time.sleep(0.01)

    service = RoutingService()
    service.follow(feed, SYSTEM)
    try:
        assert second_snapshot.wait(10)
        pool = service.pools.find("chat", "acme")
        assert pool is not None
        assert [v.id for v in pool.router.views()] == ["r1"]
        assert set(pool.endpoints) == {"r1"}
    finally:
        service.stop()
