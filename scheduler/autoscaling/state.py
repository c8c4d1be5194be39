"""What decide() reads besides the spec: the replicas as they are, and its own
bounded memory of earlier recommendations and scale changes.

The reconcile loop builds `ReplicaView`s from its replica rows and their
latest metrics, passes the `History` it stored after the previous tick, and
stores the one the Decision returns (`History.to_json()` / `from_json()`,
e.g. in a JSONB column). History is trimmed on every call to the longest
window or rate period of the spec, so it never grows with time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class ReplicaState(StrEnum):
    STARTING = "starting"  # allocation placed, engine loading (cold start)
    READY = "ready"  # serving traffic
    STANDBY = "standby"  # loaded, not serving; promoted to ready in seconds
    DRAINING = "draining"  # no new requests; in-flight ones finish or time out
    STOPPED = "stopped"  # released; ignored by decide()


@dataclass(frozen=True)
class ReplicaView:
    """One replica as decide() sees it.

    `since`: when it entered `state` (a drain's timeout counts from it).
    `for_standby`: a STARTING replica started to refill the standby pool; it
    goes to STANDBY, not READY, once loaded (the reconcile loop keeps that
    flag on the replica row).
    `kv_cache_usage`: the engine's latest KV-cache use in [0, 1] (vLLM's
    `vllm:kv_cache_usage_perc`, SGLang's `sglang:token_usage`); None when no
    scrape arrived yet.
    """

    id: str
    state: ReplicaState
    since: datetime
    kv_cache_usage: float | None = None
    num_requests_running: int = 0
    num_requests_waiting: int = 0
    for_standby: bool = False


@dataclass(frozen=True)
class Recommendation:
    """One tick's raw (unstabilised) replica recommendation."""

    at: datetime
    replicas: int
    usage: float | None  # the effective KV usage per serving replica it came from


@dataclass(frozen=True)
class ScaleChange:
    """A change of serving capacity (ready + starting-to-serve) decide() ordered."""

    at: datetime
    delta: int  # > 0 added (promoted or started), < 0 removed (drained or stopped)


@dataclass(frozen=True)
class History:
    """The metrics window / recommendation history, oldest first."""

    recommendations: tuple[Recommendation, ...] = ()
    changes: tuple[ScaleChange, ...] = ()
    panic_until: datetime | None = None  # Knative panic mode holds until then

    def to_json(self) -> dict[str, Any]:
        return {
            "recommendations": [
                [r.at.isoformat(), r.replicas, r.usage] for r in self.recommendations
            ],
            "changes": [[c.at.isoformat(), c.delta] for c in self.changes],
            "panic_until": self.panic_until.isoformat() if self.panic_until else None,
        }

    @staticmethod
    def from_json(data: Mapping[str, Any] | None) -> History:
        """The History `to_json` wrote; an empty one for None or {}."""
        if not data:
            return History()
        recs: Sequence[Sequence[Any]] = data.get("recommendations", ())
        changes: Sequence[Sequence[Any]] = data.get("changes", ())
        panic = data.get("panic_until")
        return History(
            recommendations=tuple(
                Recommendation(datetime.fromisoformat(at), int(n), None if u is None else float(u))
                for at, n, u in recs
            ),
            changes=tuple(ScaleChange(datetime.fromisoformat(at), int(d)) for at, d in changes),
            panic_until=datetime.fromisoformat(panic) if panic else None,
        )
