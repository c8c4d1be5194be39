"""Predictive minimums: which scheduled minimum holds at a given instant.

An entry `"0 9 * * 1-5": 6` with hold_s 3600 and a lead of 600 s holds from
08:50 to 10:00 on weekdays: the lead lets replicas load before the load
arrives (a cold start takes minutes), the hold covers the busy period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from croniter import croniter

from scheduler.autoscaling.spec import AutoscalingSpec, ScheduledMinimum, zone_of


@dataclass(frozen=True)
class ActiveMinimum:
    minimum: int
    entry: ScheduledMinimum
    fired_at: datetime  # the cron firing it comes from (may be up to the lead ahead)


def scheduled_minimum(spec: AutoscalingSpec, now: datetime) -> ActiveMinimum | None:
    """The highest scheduled minimum in force at `now`, or None."""
    if not spec.schedule:
        return None
    zone = zone_of(spec.timezone)
    ahead = now.astimezone(zone) + timedelta(seconds=spec.predictive_lead_s)
    best: ActiveMinimum | None = None
    for entry in spec.schedule:
        # The last firing at or before now + lead; it holds until firing + hold_s.
        fired = croniter(entry.cron, ahead + timedelta(microseconds=1)).get_prev(datetime)
        if fired + timedelta(seconds=entry.hold_s) < now:
            continue
        if best is None or entry.minimum > best.minimum:
            best = ActiveMinimum(entry.minimum, entry, fired)
    return best
