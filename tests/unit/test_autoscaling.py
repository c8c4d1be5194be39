"""The autoscaler's pure decision: HPA's rule, windows, rates, standby, drains, schedules."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from scheduler.autoscaling import (
    AutoscalingSpec,
    Decision,
    History,
    ReplicaState,
    ReplicaView,
    ScheduledMinimum,
    decide,
    scheduled_minimum,
    validate,
)
from scheduler.autoscaling.replay import ReplayConfig, replay
from scheduler.domain.errors import InvalidArgument

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)  # a Tuesday
READY = ReplicaState.READY
STANDBY = ReplicaState.STANDBY
STARTING = ReplicaState.STARTING
DRAINING = ReplicaState.DRAINING


def ready(rid: str, kv: float | None, running: int = 10, waiting: int = 0) -> ReplicaView:
    return ReplicaView(rid, READY, T0 - timedelta(hours=1), kv, running, waiting)


def run(
    spec: AutoscalingSpec,
    replicas: Sequence[ReplicaView],
    seconds: int,
    *,
    tick: int = 15,
    history: History | None = None,
    start: datetime = T0,
) -> list[Decision]:
    """decide() every `tick` s over the same replica views (nothing acts on them)."""
    decisions = []
    history = history or History()
    for t in range(0, seconds + 1, tick):
        decision = decide(spec, replicas, history, start + timedelta(seconds=t))
        history = decision.history
        decisions.append(decision)
    return decisions


SPEC = AutoscalingSpec(min_replicas=1, max_replicas=16)


def test_within_tolerance_nothing_changes() -> None:
    decisions = run(SPEC, [ready("a", 0.75), ready("b", 0.74)], 600)
    assert all(d.desired_replicas == 2 and not d.changed for d in decisions)
    assert "steady" in decisions[-1].reason or "tolerance" in decisions[-1].reason


def test_scale_up_waits_for_a_full_window_then_follows_hpa() -> None:
    # 2 × 0.86 / 0.70 = 2.46 → 3 replicas, only once 60 s of evidence exist.
    decisions = run(SPEC, [ready("a", 0.86), ready("b", 0.86)], 60)
    assert [d.desired_replicas for d in decisions] == [2, 2, 2, 2, 3]
    last = decisions[-1]
    assert last.start_serving == 1
    assert last.reason == "2→3: KV 0.86 > 0.70 over 60 s (window min 3); start 1"


def test_scale_up_is_limited_to_two_per_120_seconds() -> None:
    # Full caches with a queue as long as the batch: usage 2 × 1.0 per replica.
    hot = [ready("a", 1.0, 10, 10), ready("b", 1.0, 10, 10)]
    decisions = run(SPEC, hot, 60)
    assert decisions[-1].desired_replicas == 4
    assert decisions[-1].reason.startswith("2→4: KV 2.00 > 0.70 over 60 s (window min 6)")
    assert "+2 per 120 s" in decisions[-1].reason
    # The 4 now starting count toward capacity: 30 s later the limit still holds.
    starting = [*hot, *(ReplicaView(f"n{i}", STARTING, T0) for i in range(2))]
    later = decide(SPEC, starting, decisions[-1].history, T0 + timedelta(seconds=90))
    assert later.desired_replicas == 4 and later.start_serving == 0
    # After the period, two more.
    much_later = decide(SPEC, starting, later.history, T0 + timedelta(seconds=181))
    assert much_later.desired_replicas == 6 and much_later.start_serving == 2


def test_starting_replicas_count_toward_capacity_and_block_scale_down() -> None:
    views = [ready("a", 0.86), ready("b", 0.86), ReplicaView("c", STARTING, T0)]
    decisions = run(SPEC, views, 600)
    # Σ usage 1.72 / 0.70 → 3 = the capacity already there: nothing starts.
    assert all(d.start_serving == 0 for d in decisions)
    idle = [ready("a", 0.05), ready("b", 0.05), ReplicaView("c", STARTING, T0)]
    decisions = run(SPEC, idle, 900)
    assert all(d.desired_replicas == 3 and not d.drain for d in decisions)


def test_standby_is_promoted_first_then_refilled() -> None:
    spec = replace(SPEC, standby=1)
    views = [ready("a", 0.9), ready("b", 0.9), ReplicaView("s1", STANDBY, T0)]
    decision = run(spec, views, 60)[-1]
    assert decision.desired_replicas == 3
    assert decision.promote == ("s1",)
    assert decision.start_serving == 0
    assert decision.start_standby == 1
    assert "promote s1" in decision.reason


def test_a_draining_replica_is_taken_back_before_standby() -> None:
    spec = replace(SPEC, standby=1)
    views = [
        ready("a", 1.0),
        ready("b", 1.0),
        ReplicaView("d1", DRAINING, T0, 0.2, 3),
        ReplicaView("s1", STANDBY, T0),
    ]
    decision = run(spec, views, 60)[-1]
    assert decision.promote[0] == "d1"
    assert decision.desired_replicas == 3 + (decision.start_serving > 0)


def test_scale_down_waits_360_s_drains_one_and_keeps_it_as_standby() -> None:
    # 300 s of window, each recommendation the peak of the last 60 s.
    spec = replace(SPEC, standby=1)
    views = [ready("a", 0.2, 3), ready("b", 0.3, 8), ready("c", 0.25, 5)]
    decisions = run(spec, views, 360)
    # The pool is short of its standby, so one is started right away.
    assert decisions[0].start_standby == 1
    assert all(d.desired_replicas == 3 for d in decisions[:-1])
    last = decisions[-1]
    # Σ 0.75 / 0.70 → 2; at most -1 per 300 s; the least busy replica drains.
    assert last.desired_replicas == 2
    assert last.drain == ("a",)
    assert last.reason.startswith("3→2: KV 0.25 < 0.70 over 360 s (window max 2)")
    # The drain counts as the future standby, so no new standby is started for it.
    assert last.start_standby == 0
    done = decide(
        spec,
        [ready("b", 0.4), ready("c", 0.35), ReplicaView("a", DRAINING, T0, 0.0, 0)],
        last.history,
        T0 + timedelta(seconds=390),
    )
    assert done.to_standby == ("a",) and done.stop == ()


def test_a_drain_stops_the_replica_when_standby_is_full_or_times_out() -> None:
    spec = replace(SPEC, standby=1, drain_timeout_s=120)
    base = [ready("b", 0.6), ready("c", 0.8), ReplicaView("s1", STANDBY, T0)]
    busy = ReplicaView("a", DRAINING, T0, 0.5, 4)
    assert decide(spec, [*base, busy], History(), T0 + timedelta(seconds=60)).stop == ()
    timed_out = decide(spec, [*base, busy], History(), T0 + timedelta(seconds=120))
    assert timed_out.stop == ("a",) and timed_out.to_standby == ()


def test_surplus_standby_is_stopped_newest_first() -> None:
    spec = replace(SPEC, standby=1)
    views = [
        ready("a", 0.7),
        ReplicaView("s-old", STANDBY, T0 - timedelta(hours=2)),
        ReplicaView("s-new", STANDBY, T0 - timedelta(hours=1)),
    ]
    assert decide(spec, views, History(), T0).stop == ("s-new",)


def test_scheduled_minimum_applies_early_and_past_the_rate_policy() -> None:
    spec = replace(
        SPEC, schedule=(ScheduledMinimum("0 9 * * 1-5", 6, hold_s=3600),), predictive_lead_s=600
    )
    views = [ready("a", 0.7), ready("b", 0.7)]
    assert decide(spec, views, History(), T0 + timedelta(minutes=49)).desired_replicas == 2
    early = decide(spec, views, History(), T0 + timedelta(minutes=50))
    assert early.desired_replicas == 6 and early.start_serving == 4
    assert early.reason.startswith("2→6: schedule '0 9 * * 1-5' keeps ≥ 6")
    assert decide(spec, views, History(), T0 + timedelta(hours=2, minutes=1)).desired_replicas == 2
    saturday = datetime(2026, 12, 5, 8, 55, tzinfo=UTC)
    assert scheduled_minimum(spec, saturday) is None


def test_scheduled_minimum_in_a_time_zone() -> None:
    spec = replace(
        SPEC, schedule=(ScheduledMinimum("0 9 * * *", 4, hold_s=600),), timezone="Europe/Berlin"
    )
    # 09:00 in Berlin is 08:00 UTC in December; the lead makes it 07:50 UTC.
    active = scheduled_minimum(spec, datetime(2026, 12, 1, 7, 55, tzinfo=UTC))
    assert active is not None and active.minimum == 4
    assert scheduled_minimum(spec, datetime(2026, 12, 1, 8, 11, tzinfo=UTC)) is None


def test_scale_to_zero_only_when_asked() -> None:
    idle = [ready("a", 0.0, 0)]
    assert run(SPEC, idle, 900)[-1].desired_replicas == 1
    spec = replace(SPEC, min_replicas=0, scale_to_zero=True, standby=1)
    decisions = run(spec, [*idle, ReplicaView("s", STANDBY, T0)], 360)
    assert decisions[-1].desired_replicas == 0
    assert decisions[-1].drain == ("a",)
    assert decisions[-1].stop == ("s",)  # no standby kept at zero
    later = T0 + timedelta(seconds=400)
    woken = decide(spec, [], decisions[-1].history, later, pending_requests=3)
    assert woken.desired_replicas == 1 and woken.start_serving == 1


def test_panic_skips_the_scale_up_window() -> None:
    spec = replace(SPEC, panic_threshold=1.5)
    hot = [ready("a", 1.0, 10, 10), ready("b", 1.0, 10, 10)]
    first = decide(spec, hot, History(), T0)
    assert first.desired_replicas == 4 and first.reason.startswith("2→4: panic")
    # While panic lasts nothing scales down, even once the load is gone.
    cold = [ready(c, 0.05, 1) for c in "abcd"]
    decisions = run(spec, cold, 60, history=first.history, start=T0 + timedelta(seconds=15))
    assert all(d.desired_replicas == 4 for d in decisions)


def test_advisory_decides_but_records_no_change() -> None:
    spec = replace(SPEC, advisory=True)
    decision = run(spec, [ready("a", 0.95), ready("b", 0.95)], 60)[-1]
    assert decision.advisory and decision.desired_replicas == 3
    assert decision.reason.endswith("; advisory; start 1")
    assert decision.history.changes == ()


def test_ready_replicas_without_metrics_count_as_at_target() -> None:
    decisions = run(SPEC, [ready("a", None), ready("b", None)], 900)
    assert all(d.desired_replicas == 2 for d in decisions)


def test_history_stays_bounded_and_round_trips_as_json() -> None:
    history = History()
    views = [ready("a", 0.9)]
    for t in range(0, 86_400, 15):
        history = decide(SPEC, views, history, T0 + timedelta(seconds=t)).history
    # 360 s of 15-s ticks, plus the one older record that proves the window is covered.
    assert len(history.recommendations) <= 360 // 15 + 2
    assert History.from_json(history.to_json()) == history
    assert History.from_json(None) == History()


def test_square_wave_does_not_flap() -> None:
    # Demand alternates between 3 and 6 replica units every 5 minutes for 6 hours.
    def demand(now: datetime) -> float:
        return 6.0 if ((now - T0).total_seconds() // 300) % 2 else 3.0

    loads = itertools.cycle([90.0, 150.0, 240.0])
    spec = AutoscalingSpec(min_replicas=1, max_replicas=16, standby=1)
    result = replay(
        ReplayConfig(spec, cold_start_s=lambda: next(loads), initial_ready=4), demand, T0, 6 * 3600
    )
    assert result.scale_ups >= 1  # it did react to the high phase
    assert result.flaps == 0
    assert result.scale_downs == 0  # a 5-minute dip is shorter than the 360 s of proof


def test_a_long_dip_scales_down_once_without_flapping() -> None:
    # 20-minute period: the low phase outlasts the down window, so it scales down and back up.
    def demand(now: datetime) -> float:
        return 6.0 if ((now - T0).total_seconds() // 1200) % 2 else 2.0

    spec = AutoscalingSpec(min_replicas=1, max_replicas=16, standby=1)
    result = replay(
        ReplayConfig(spec, cold_start_s=lambda: 120.0, initial_ready=3), demand, T0, 4 * 3600
    )
    assert result.scale_downs >= 1 and result.scale_ups >= 1
    assert result.flaps == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"min_replicas": 3, "max_replicas": 2}, "min_replicas (3) must not exceed max_replicas"),
        ({"min_replicas": 0}, "min_replicas must be at least 1"),
        ({"target_kv_utilisation": 0.0}, "target_kv_utilisation"),
        ({"target_kv_utilisation": 1.2}, "target_kv_utilisation"),
        ({"schedule": (ScheduledMinimum("0 9 * *", 2),)}, "schedule cron '0 9 * *'"),
        ({"schedule": (ScheduledMinimum("61 9 * * *", 2),)}, "schedule cron"),
        ({"schedule": (ScheduledMinimum("0 9 * * *", 20),)}, "minimum must be 0..max_replicas"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"panic_threshold": 0.5}, "panic_threshold"),
        ({"standby": -1}, "standby"),
    ],
)
def test_bad_specs_name_the_field(change: dict[str, object], field: str) -> None:
    spec = replace(AutoscalingSpec(min_replicas=1, max_replicas=4), **change)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=re.escape(field)):
        validate(spec)


def test_the_default_spec_is_valid() -> None:
    validate(AutoscalingSpec(min_replicas=2, max_replicas=16, standby=1))
