"""The autoscaler's one decision: pure, over plain values, with the clock passed in.

Per tick, for one deployment:

1. **Capacity** is the serving replicas: READY plus STARTING-to-serve.
   Starting replicas count toward capacity but not readiness: they carry no
   load (usage 0), and while any is starting no scale-down is recommended.
2. **Usage** per READY replica is its KV-cache use; a replica with queued
   requests is past what its cache shows, so its usage is scaled by
   (running + waiting) ÷ running. A READY replica with no scrape yet counts
   as exactly at target (neither up nor down).
3. **Raw recommendation** (HPA v2): ratio = Σ usage ÷ (capacity × target);
   within `tolerance` of 1: keep capacity; else ceil(Σ usage ÷ target)
   (= ceil(capacity × mean usage ÷ target)).
4. **Stabilisation** (HPA's rule): scale up to the LOWEST recommendation of
   the scale-up window (pressure held the whole window), down to the HIGHEST
   of the scale-down window (slack held the whole window). One addition: a
   scale-down recommendation is the peak of the last `metrics_window_s`
   (60 s), so slack must last 300 + 60 s; a dip of 300 s (a 10-minute square
   wave) would otherwise scale down just as the load returns. Knative-style
   panic, when asked for, skips the scale-up window once usage reaches
   panic_threshold × target and forbids scale-down while it lasts.
5. **Rate policies**: at most +N per period up, -N per period down, counted
   from the capacity changes this function ordered within the period.
6. **Bounds** last, as in HPA: [max(min_replicas, scheduled minimum),
   max_replicas]; a minimum is reached at once, past the rate policies.
7. **Actions.** Up: promote DRAINING replicas back first (still loaded,
   cache warm), then STANDBY (seconds), then start new ones. Down: drain the
   least busy READY replicas (a replica still STARTING is stopped instead
   when no READY one is left). A drain ends when in-flight is 0 or after
   drain_timeout_s; the replica then turns STANDBY while the pool is below
   target, else stops. The standby pool is then refilled (replicas still
   draining count as future standby) or trimmed.

`desired_replicas` is the serving capacity after the decision. In advisory
mode the Decision is the same, but no capacity change enters the history
(nothing will act on it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from scheduler.autoscaling.schedule import scheduled_minimum
from scheduler.autoscaling.spec import AutoscalingSpec, ScalingBehavior
from scheduler.autoscaling.state import (
    History,
    Recommendation,
    ReplicaState,
    ReplicaView,
    ScaleChange,
)

_EPS = 1e-9


@dataclass(frozen=True)
class Decision:
    """What to do now, why, and the history to keep for the next tick."""

    current_replicas: int  # serving capacity before (ready + starting-to-serve)
    desired_replicas: int  # serving capacity after
    standby_target: int
    start_serving: int  # new replicas to start that serve once loaded
    start_standby: int  # new replicas to start that go to standby once loaded
    promote: tuple[str, ...]  # standby or draining → ready
    drain: tuple[str, ...]  # ready → draining
    to_standby: tuple[str, ...]  # draining (done) → standby
    stop: tuple[str, ...]  # → stopped: release the allocation
    reason: str  # one line for the deployment's history
    usage: float | None  # mean effective KV usage per serving replica
    advisory: bool
    history: History

    @property
    def changed(self) -> bool:
        """Whether there is anything to act on."""
        return bool(
            self.start_serving
            or self.start_standby
            or self.promote
            or self.drain
            or self.to_standby
            or self.stop
        )


def decide(
    spec: AutoscalingSpec,
    replicas: Sequence[ReplicaView],
    history: History,
    now: datetime,
    *,
    pending_requests: int = 0,
) -> Decision:
    """One tick of the autoscaler for one deployment (see the module docstring).

    `pending_requests`: requests waiting upstream with no replica to take them
    (the gateway's queue); it only matters for scale-from-zero.
    """
    live = [r for r in replicas if r.state is not ReplicaState.STOPPED]
    ready = sorted((r for r in live if r.state is ReplicaState.READY), key=_busy)
    starting = [r for r in live if r.state is ReplicaState.STARTING and not r.for_standby]
    starting_standby = [r for r in live if r.state is ReplicaState.STARTING and r.for_standby]
    standby = sorted((r for r in live if r.state is ReplicaState.STANDBY), key=_by_since)
    draining = sorted(
        (r for r in live if r.state is ReplicaState.DRAINING), key=_by_since, reverse=True
    )
    capacity = len(ready) + len(starting)
    target = spec.target_kv_utilisation

    # 2-3: usage and the raw recommendation.
    usage_sum = sum(_usage(r, target) for r in ready)
    usage = usage_sum / capacity if capacity else None
    raw, raw_note = _raw_recommendation(spec, capacity, len(starting), usage_sum, pending_requests)

    history = _trimmed(history, spec, now)
    history = replace(
        history,
        recommendations=(*history.recommendations, Recommendation(now, raw, usage)),
    )

    # 4: stabilisation, with optional panic.
    panic = history.panic_until is not None and history.panic_until > now
    if (
        spec.panic_threshold is not None
        and usage is not None
        and usage >= spec.panic_threshold * target
    ):
        panic = True
        history = replace(
            history,
            panic_until=now + timedelta(seconds=spec.scale_up.stabilization_window_s),
        )
    up_floor = _window(history, now, capacity, spec.scale_up.stabilization_window_s, True)
    down_span = spec.scale_down.stabilization_window_s + spec.metrics_window_s
    down_ceiling = _window(history, now, capacity, down_span, False)
    stabilised = capacity
    if panic or capacity == 0:
        # Requests waiting with no replica at all cannot wait for a window.
        stabilised = max(capacity, raw)
    elif up_floor > capacity:
        stabilised = up_floor
    if not panic and down_ceiling < stabilised:
        stabilised = down_ceiling

    # 5: rate policies.
    rate_note = ""
    if stabilised > capacity:
        limit = _up_limit(history, spec.scale_up, capacity, now)
        if stabilised > limit:
            stabilised, rate_note = limit, _policy_text("+", spec.scale_up)
    elif stabilised < capacity:
        limit = _down_limit(history, spec.scale_down, capacity, now)
        if stabilised < limit:
            stabilised, rate_note = limit, _policy_text("-", spec.scale_down)

    # 6: bounds, the scheduled minimum included.
    active = scheduled_minimum(spec, now)
    floor = max(spec.min_replicas, active.minimum if active else 0)
    floor = min(floor, spec.max_replicas)
    bound_note = ""
    desired = stabilised
    if desired < floor:
        desired = floor
        bound_note = (
            f"schedule {active.entry.cron!r} keeps ≥ {floor}"
            if active is not None and active.minimum > spec.min_replicas
            else f"min_replicas {floor}"
        )
        rate_note = ""
    elif desired > spec.max_replicas:
        desired = spec.max_replicas
        bound_note = f"max_replicas {spec.max_replicas}"
        rate_note = ""

    # 7: actions.
    promote: list[str] = []
    drain: list[str] = []
    stop: list[str] = []
    start_serving = 0
    delta = desired - capacity
    if delta > 0:
        for candidate in [*draining, *standby]:
            if len(promote) == delta:
                break
            promote.append(candidate.id)
        start_serving = delta - len(promote)
    elif delta < 0:
        drain = [r.id for r in ready[:-delta]]
        shortfall = -delta - len(drain)
        stop.extend(r.id for r in sorted(starting, key=_by_since, reverse=True)[:shortfall])

    promoted = set(promote)
    standby_target = 0 if desired == 0 else spec.standby
    pool = len(starting_standby) + sum(1 for r in standby if r.id not in promoted)
    to_standby: list[str] = []
    still_draining = 0
    for replica in draining:
        if replica.id in promoted:
            continue
        if not _drained(replica, spec, now):
            still_draining += 1
            continue
        if pool < standby_target:
            to_standby.append(replica.id)
            pool += 1
        else:
            stop.append(replica.id)
    # Replicas draining now (earlier or this tick) will be standby soon if short.
    future_pool = pool + still_draining + len(drain)
    start_standby = max(0, standby_target - future_pool)
    excess = pool - standby_target
    if excess > 0:
        # Cancel loads first (nothing loaded to waste), then the newest standby.
        spare = [r.id for r in sorted(starting_standby, key=_by_since, reverse=True)]
        spare += [r.id for r in reversed(standby) if r.id not in promoted]
        stop.extend(spare[:excess])

    if delta and not spec.advisory:
        history = replace(history, changes=(*history.changes, ScaleChange(now, delta)))

    reason = _reason(
        spec,
        capacity,
        desired,
        usage,
        raw,
        raw_note,
        up_floor,
        down_ceiling,
        panic,
        rate_note,
        bound_note,
        actions=_actions_text(promote, start_serving, drain, to_standby, stop, start_standby),
    )
    return Decision(
        current_replicas=capacity,
        desired_replicas=desired,
        standby_target=standby_target,
        start_serving=start_serving,
        start_standby=start_standby,
        promote=tuple(promote),
        drain=tuple(drain),
        to_standby=tuple(to_standby),
        stop=tuple(stop),
        reason=reason,
        usage=usage,
        advisory=spec.advisory,
        history=history,
    )


def _usage(replica: ReplicaView, target: float) -> float:
    """Effective KV usage of a READY replica (see the module docstring)."""
    if replica.kv_cache_usage is None:
        return target
    kv = min(max(replica.kv_cache_usage, 0.0), 1.0)
    if replica.num_requests_waiting > 0:
        running = max(replica.num_requests_running, 1)
        kv = max(kv, target) * (running + replica.num_requests_waiting) / running
    return kv


def _raw_recommendation(
    spec: AutoscalingSpec,
    capacity: int,
    starting: int,
    usage_sum: float,
    pending_requests: int,
) -> tuple[int, str]:
    target = spec.target_kv_utilisation
    if capacity == 0:
        return (1 if pending_requests > 0 else 0), "no serving replica"
    ratio = usage_sum / (capacity * target)
    if abs(ratio - 1.0) <= spec.tolerance:
        return capacity, "within tolerance"
    raw = math.ceil(usage_sum / target - _EPS)
    if raw == 0 and not spec.scale_to_zero:
        raw = 1
    if starting and raw < capacity:
        # HPA: replicas not ready yet never justify a scale-down.
        return capacity, "replicas still starting"
    return raw, ""


def _window(history: History, now: datetime, capacity: int, seconds: float, lowest: bool) -> int:
    """The lowest (or highest) recommendation of the last `seconds`. A window the
    history does not reach back over yet (a new deployment, a longer window)
    also holds the current capacity: no change without a full window of evidence."""
    cutoff = now - timedelta(seconds=seconds)
    values = [r.replicas for r in history.recommendations if r.at >= cutoff]
    if not any(r.at <= cutoff for r in history.recommendations):
        values.append(capacity)
    return min(values) if lowest else max(values)


def _up_limit(history: History, behavior: ScalingBehavior, capacity: int, now: datetime) -> int:
    limits = []
    for policy in behavior.policies:
        cutoff = now - timedelta(seconds=policy.period_s)
        added = sum(c.delta for c in history.changes if c.at > cutoff and c.delta > 0)
        limits.append(capacity - added + policy.replicas)
    return max(capacity, max(limits))


def _down_limit(history: History, behavior: ScalingBehavior, capacity: int, now: datetime) -> int:
    limits = []
    for policy in behavior.policies:
        cutoff = now - timedelta(seconds=policy.period_s)
        removed = -sum(c.delta for c in history.changes if c.at > cutoff and c.delta < 0)
        limits.append(capacity + removed - policy.replicas)
    return min(capacity, min(limits))


def _trimmed(history: History, spec: AutoscalingSpec, now: datetime) -> History:
    """Only what a window or period can still see: bounded, whatever the uptime."""
    horizon = max(
        spec.scale_up.stabilization_window_s,
        spec.scale_down.stabilization_window_s + spec.metrics_window_s,
        *(p.period_s for p in spec.scale_up.policies),
        *(p.period_s for p in spec.scale_down.policies),
    )
    cutoff = now - timedelta(seconds=horizon)
    panic = history.panic_until if history.panic_until and history.panic_until > now else None
    recs = history.recommendations
    older = [i for i, r in enumerate(recs) if r.at < cutoff]
    # Keep the newest one before the horizon too: it shows the window is covered.
    keep_from = older[-1] if older else 0
    return History(
        recommendations=recs[keep_from:],
        changes=tuple(c for c in history.changes if c.at >= cutoff),
        panic_until=panic,
    )


def _drained(replica: ReplicaView, spec: AutoscalingSpec, now: datetime) -> bool:
    idle = replica.num_requests_running == 0 and replica.num_requests_waiting == 0
    timed_out = (now - replica.since).total_seconds() >= spec.drain_timeout_s
    return idle or timed_out


def _busy(replica: ReplicaView) -> tuple[int, float, str]:
    kv = replica.kv_cache_usage if replica.kv_cache_usage is not None else 0.0
    return (replica.num_requests_running + replica.num_requests_waiting, kv, replica.id)


def _by_since(replica: ReplicaView) -> tuple[datetime, str]:
    return (replica.since, replica.id)


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _policy_text(sign: str, behavior: ScalingBehavior) -> str:
    return "; ".join(f"{sign}{p.replicas} per {_seconds(p.period_s)}" for p in behavior.policies)


def _actions_text(
    promote: Iterable[str],
    start_serving: int,
    drain: Iterable[str],
    to_standby: Iterable[str],
    stop: Iterable[str],
    start_standby: int,
) -> str:
    parts = []
    if promote:
        parts.append("promote " + ", ".join(promote))
    if start_serving:
        parts.append(f"start {start_serving}")
    if drain:
        parts.append("drain " + ", ".join(drain))
    if to_standby:
        parts.append("to standby " + ", ".join(to_standby))
    if stop:
        parts.append("stop " + ", ".join(stop))
    if start_standby:
        parts.append(f"start {start_standby} standby")
    return "; ".join(parts)


def _reason(
    spec: AutoscalingSpec,
    capacity: int,
    desired: int,
    usage: float | None,
    raw: int,
    raw_note: str,
    up_floor: int,
    down_ceiling: int,
    panic: bool,
    rate_note: str,
    bound_note: str,
    *,
    actions: str,
) -> str:
    """E.g. `2→4: KV 0.86 > 0.70 over 60 s (window min 4); +2 per 120 s; start 2`."""
    target = spec.target_kv_utilisation
    kv = f"KV {usage:.2f}" if usage is not None else "KV n/a"
    if bound_note:
        why = bound_note
    elif panic and desired > capacity:
        why = f"panic: {kv} ≥ {spec.panic_threshold:g}×{target:.2f}"
    elif desired > capacity:
        window = _seconds(spec.scale_up.stabilization_window_s)
        why = f"{kv} > {target:.2f} over {window} (window min {up_floor})"
    elif desired < capacity:
        window = _seconds(spec.scale_down.stabilization_window_s + spec.metrics_window_s)
        why = f"{kv} < {target:.2f} over {window} (window max {down_ceiling})"
    elif raw_note:
        why = f"{kv}, {raw_note}"
    elif raw > capacity:
        window = _seconds(spec.scale_up.stabilization_window_s)
        why = f"{kv} > {target:.2f}, waiting for the {window} window"
    elif raw < capacity:
        window = _seconds(spec.scale_down.stabilization_window_s + spec.metrics_window_s)
        why = f"{kv} < {target:.2f}, waiting for the {window} window"
    else:
        why = f"{kv}, steady"
    text = f"{capacity}→{desired}: {why}"
    if rate_note:
        text += f"; {rate_note}"
    if spec.advisory:
        text += "; advisory"
    if actions:
        text += f"; {actions}"
    return text
