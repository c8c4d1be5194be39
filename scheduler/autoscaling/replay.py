"""Replay a demand curve through decide() on a simulated clock.

A small discrete-time model of one deployment, for tests and
bench/autoscale.py; pure (no I/O, no wall clock).

- Demand is in *replica units*: 1.0 is the load that fills one replica's KV
  cache (KV usage 1.0). A serving replica beyond that queues requests, so the
  SLO is violated whenever demand exceeds the READY replicas.
- Each second, the engines' KV usage follows the demand with a first-order
  lag (`metric_lag_s`: requests in flight keep their cache until they end)
  and is shared evenly by the READY replicas; above 1.0 the surplus shows
  as waiting requests (`max_batch` running sequences at KV 1.0).
- decide() runs every `tick_s` seconds, as the reconcile loop would, and its
  actions apply at once: a start becomes READY (or STANDBY) after a cold
  start drawn from `cold_start_s`; a promotion after `promotion_s` (the
  gateway learning of it: the weights are already on the GPUs); a drain
  ends when its in-flight requests have finished (`metric_lag_s`).
- A flap is a reversal of direction (up then down, or down then up) less
  than the longer stabilisation window after the previous change.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from scheduler.autoscaling.decide import decide
from scheduler.autoscaling.spec import AutoscalingSpec
from scheduler.autoscaling.state import History, ReplicaState, ReplicaView


@dataclass
class _Replica:
    id: str
    state: ReplicaState
    since: float  # simulated seconds
    for_standby: bool = False
    ready_at: float | None = None  # starting or promoting: when it serves (or stands by)
    ordered_at: float = 0.0
    drained_at: float | None = None  # draining: when its last request ends


@dataclass(frozen=True)
class ReplayConfig:
    spec: AutoscalingSpec
    cold_start_s: Callable[[], float]  # draws one cold start (placement + load + engine init)
    tick_s: float = 15.0
    promotion_s: float = 1.0
    metric_lag_s: float = 20.0
    max_batch: int = 64
    initial_ready: int = 1
    initial_standby: int = 0


@dataclass
class ReplayResult:
    flaps: int = 0
    scale_ups: int = 0
    scale_downs: int = 0
    replica_hours: float = 0.0
    slo_violation_minutes: float = 0.0
    cold_starts_s: list[float] = field(default_factory=list)
    promotions_s: list[float] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # one per change
    capacity_trace: list[tuple[float, float, int]] = field(default_factory=list)


def replay(
    config: ReplayConfig,
    demand: Callable[[datetime], float],
    start: datetime,
    seconds: int,
    *,
    progress: Callable[[float], None] | None = None,
) -> ReplayResult:
    """Run `seconds` simulated seconds from `start` (1-second steps)."""
    result = ReplayResult()
    replicas: list[_Replica] = []
    serial = 0

    def new_replica(state: ReplicaState, now_s: float, for_standby: bool = False) -> _Replica:
        nonlocal serial
        serial += 1
        replica = _Replica(f"r{serial}", state, now_s, for_standby, ordered_at=now_s)
        replicas.append(replica)
        return replica

    for _ in range(config.initial_ready):
        new_replica(ReplicaState.READY, 0.0)
    for _ in range(config.initial_standby):
        new_replica(ReplicaState.STANDBY, 0.0)
    history = History()
    load = demand(start)  # the lagged load the engines show
    lag = max(config.metric_lag_s, 1.0)
    last_change: tuple[float, int] | None = None
    flap_window = max(
        config.spec.scale_up.stabilization_window_s, config.spec.scale_down.stabilization_window_s
    )
    tick = max(1, round(config.tick_s))
    violation_s = 0
    held_s = 0
    for second in range(seconds):
        now_s = float(second)
        now = start + timedelta(seconds=second)
        wanted = demand(now)
        load += (wanted - load) * (1.0 - math.exp(-1.0 / lag))
        _advance(replicas, now_s)
        ready = [r for r in replicas if r.state is ReplicaState.READY]
        if wanted > len(ready) + 1e-9:
            violation_s += 1
        held_s += sum(1 for r in replicas if r.state is not ReplicaState.STOPPED)
        if second % tick:
            continue
        views = _views(replicas, ready, load, now_s, start, config)
        decision = decide(config.spec, views, history, now)
        history = decision.history
        result.capacity_trace.append((now_s, wanted, len(ready)))
        by_id = {r.id: r for r in replicas}
        for rid in decision.promote:
            replica = by_id[rid]
            replica.state = ReplicaState.STARTING  # counts as capacity until it serves
            replica.for_standby = False
            replica.ready_at = now_s + config.promotion_s
            replica.ordered_at = now_s
            replica.since = now_s
            result.promotions_s.append(config.promotion_s)
        for _ in range(decision.start_serving):
            _start(new_replica(ReplicaState.STARTING, now_s), now_s, config, result)
        for _ in range(decision.start_standby):
            _start(new_replica(ReplicaState.STARTING, now_s, True), now_s, config, result)
        for rid in decision.drain:
            replica = by_id[rid]
            replica.state = ReplicaState.DRAINING
            replica.since = now_s
            replica.drained_at = now_s + config.metric_lag_s
        for rid in decision.to_standby:
            by_id[rid].state = ReplicaState.STANDBY
            by_id[rid].since = now_s
        for rid in decision.stop:
            by_id[rid].state = ReplicaState.STOPPED
            by_id[rid].since = now_s
        replicas[:] = [r for r in replicas if r.state is not ReplicaState.STOPPED]
        delta = decision.desired_replicas - decision.current_replicas
        if delta:
            direction = 1 if delta > 0 else -1
            if direction > 0:
                result.scale_ups += 1
            else:
                result.scale_downs += 1
            if (
                last_change is not None
                and last_change[1] != direction
                and now_s - last_change[0] < flap_window
            ):
                result.flaps += 1
            last_change = (now_s, direction)
            result.reasons.append(f"{now:%H:%M:%S} {decision.reason}")
        if progress is not None and second % 3600 == 0:
            progress(second / seconds)
    result.slo_violation_minutes = violation_s / 60.0
    result.replica_hours = held_s / 3600.0
    return result


def _start(replica: _Replica, now_s: float, config: ReplayConfig, result: ReplayResult) -> None:
    cold = config.cold_start_s()
    replica.ready_at = now_s + cold
    result.cold_starts_s.append(cold)


def _advance(replicas: list[_Replica], now_s: float) -> None:
    for replica in replicas:
        loaded = replica.ready_at is not None and replica.ready_at <= now_s
        if replica.state is ReplicaState.STARTING and loaded:
            replica.state = ReplicaState.STANDBY if replica.for_standby else ReplicaState.READY
            replica.since = now_s
            replica.ready_at = None


def _views(
    replicas: list[_Replica],
    ready: list[_Replica],
    load: float,
    now_s: float,
    start: datetime,
    config: ReplayConfig,
) -> list[ReplicaView]:
    per_replica = load / len(ready) if ready else 0.0
    kv = min(per_replica, 1.0)
    running = round(kv * config.max_batch)
    waiting = round(max(per_replica - 1.0, 0.0) * config.max_batch)
    views = []
    for replica in replicas:
        since = start + timedelta(seconds=replica.since)
        if replica.state is ReplicaState.READY:
            views.append(ReplicaView(replica.id, replica.state, since, kv, running, waiting))
        elif replica.state is ReplicaState.DRAINING:
            busy = replica.drained_at is not None and replica.drained_at > now_s
            views.append(
                ReplicaView(replica.id, replica.state, since, kv if busy else 0.0, 1 if busy else 0)
            )
        else:
            views.append(
                ReplicaView(replica.id, replica.state, since, for_standby=replica.for_standby)
            )
    return views


def with_plain(spec: AutoscalingSpec) -> AutoscalingSpec:
    """The same spec with standby and predictive minimums off (the baseline)."""
    return replace(spec, standby=0, schedule=())
