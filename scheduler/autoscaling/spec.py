"""A deployment's autoscaling spec: what a platform team writes, as frozen values.

The defaults are HPA v2 `behavior` settings a team would write for LLM
replicas whose cold start takes minutes: scale up after 60 s of sustained
pressure by at most 2 replicas per 120 s, scale down after 300 s of sustained
slack by at most 1 replica per 300 s. `validate()` checks a spec and raises
InvalidArgument naming the field, so the deployments service can call it on
every create/update.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from scheduler.domain.errors import InvalidArgument, quoted

DEFAULT_TARGET_KV_UTILISATION = 0.70
DEFAULT_TOLERANCE = 0.10
MAX_REPLICAS_LIMIT = 1000
MAX_SCHEDULE_ENTRIES = 32


@dataclass(frozen=True)
class RatePolicy:
    """At most `replicas` replicas added (scale-up) or removed (scale-down) per `period_s`."""

    replicas: int
    period_s: float


@dataclass(frozen=True)
class ScalingBehavior:
    """HPA v2 `behavior.scaleUp` / `scaleDown`.

    `stabilization_window_s`: scale-up follows the LOWEST recommendation of the
    last window (pressure must hold for the whole window), scale-down the
    HIGHEST (slack must hold for the whole window) — exactly HPA's rule.
    Several policies: the most permissive wins (HPA's `selectPolicy: Max`).
    """

    stabilization_window_s: float
    policies: tuple[RatePolicy, ...]


DEFAULT_SCALE_UP = ScalingBehavior(60.0, (RatePolicy(2, 120.0),))
DEFAULT_SCALE_DOWN = ScalingBehavior(300.0, (RatePolicy(1, 300.0),))


@dataclass(frozen=True)
class ScheduledMinimum:
    """A predictive minimum: from each firing of `cron` (in `timezone`) the
    deployment keeps at least `minimum` serving replicas for `hold_s` seconds.
    The autoscaler applies it `AutoscalingSpec.predictive_lead_s` early so the
    replicas have loaded by the time the load arrives."""

    cron: str  # five fields, e.g. "0 9 * * 1-5"
    minimum: int
    hold_s: float = 3600.0


@dataclass(frozen=True)
class AutoscalingSpec:
    """Everything decide() needs to know about one deployment's scaling wishes."""

    min_replicas: int = 1
    max_replicas: int = 1
    target_kv_utilisation: float = DEFAULT_TARGET_KV_UTILISATION
    tolerance: float = DEFAULT_TOLERANCE  # |usage / target - 1| within this: no change
    scale_up: ScalingBehavior = DEFAULT_SCALE_UP
    scale_down: ScalingBehavior = DEFAULT_SCALE_DOWN
    # A scale-down recommendation is the highest raw one of the last
    # metrics_window_s (a peak hold), so slack must last the scale-down window
    # plus this: a dip no longer than the scale-down window (a 10-minute square
    # wave) never removes a replica the next scale-up would bring back. 0: HPA.
    metrics_window_s: float = 60.0
    standby: int = 0  # warm standby replicas: loaded, not serving, promoted in seconds
    schedule: tuple[ScheduledMinimum, ...] = ()
    timezone: str = "UTC"  # of the schedule's cron expressions
    predictive_lead_s: float = 600.0  # apply a scheduled minimum this early (cold start)
    scale_to_zero: bool = False  # only then may min_replicas be 0
    advisory: bool = False  # decide and record, do not act
    # Knative-style panic: when usage reaches panic_threshold × target, scale up
    # at once (no stabilisation window, rate policy still applies) and never
    # scale down until it has stayed below for the scale-up window. None: off.
    panic_threshold: float | None = None
    drain_timeout_s: float = 120.0  # in-flight requests get this long, then the drain ends


def validate(spec: AutoscalingSpec) -> None:
    """InvalidArgument naming the first field that is wrong."""
    if spec.min_replicas < 0 or (spec.min_replicas == 0 and not spec.scale_to_zero):
        raise InvalidArgument(
            f"min_replicas must be at least 1 (0 only with scale_to_zero), got {spec.min_replicas}"
        )
    if not 1 <= spec.max_replicas <= MAX_REPLICAS_LIMIT:
        raise InvalidArgument(
            f"max_replicas must be 1..{MAX_REPLICAS_LIMIT}, got {spec.max_replicas}"
        )
    if spec.min_replicas > spec.max_replicas:
        raise InvalidArgument(
            f"min_replicas ({spec.min_replicas}) must not exceed max_replicas ({spec.max_replicas})"
        )
    if not 0.0 < spec.target_kv_utilisation <= 1.0:
        raise InvalidArgument(
            f"target_kv_utilisation must be in (0, 1], got {spec.target_kv_utilisation}"
        )
    if not 0.0 <= spec.tolerance < 1.0:
        raise InvalidArgument(f"tolerance must be in [0, 1), got {spec.tolerance}")
    for name, behavior in (("scale_up", spec.scale_up), ("scale_down", spec.scale_down)):
        if not 0.0 <= behavior.stabilization_window_s <= 3600.0:
            raise InvalidArgument(
                f"{name}.stabilization_window_s must be 0..3600, "
                f"got {behavior.stabilization_window_s}"
            )
        if not behavior.policies:
            raise InvalidArgument(f"{name}.policies must hold at least one rate policy")
        for policy in behavior.policies:
            if policy.replicas < 1 or not 0.0 < policy.period_s <= 3600.0:
                raise InvalidArgument(
                    f"{name}.policies: each needs replicas ≥ 1 and period_s in (0, 3600], "
                    f"got {policy.replicas} per {policy.period_s} s"
                )
    if not 0.0 <= spec.metrics_window_s <= 3600.0:
        raise InvalidArgument(f"metrics_window_s must be 0..3600, got {spec.metrics_window_s}")
    if not 0 <= spec.standby <= MAX_REPLICAS_LIMIT:
        raise InvalidArgument(f"standby must be 0..{MAX_REPLICAS_LIMIT}, got {spec.standby}")
    zone = zone_of(spec.timezone)
    if len(spec.schedule) > MAX_SCHEDULE_ENTRIES:
        raise InvalidArgument(f"schedule holds at most {MAX_SCHEDULE_ENTRIES} entries")
    for entry in spec.schedule:
        validate_cron(entry.cron, zone)
        if not 0 <= entry.minimum <= spec.max_replicas:
            raise InvalidArgument(
                f"schedule {quoted(entry.cron)}: minimum must be 0..max_replicas "
                f"({spec.max_replicas}), got {entry.minimum}"
            )
        if not 0.0 < entry.hold_s <= 7 * 86400.0:
            raise InvalidArgument(
                f"schedule {quoted(entry.cron)}: hold_s must be in (0, 604800], got {entry.hold_s}"
            )
    if not 0.0 <= spec.predictive_lead_s <= 7200.0:
        raise InvalidArgument(f"predictive_lead_s must be 0..7200, got {spec.predictive_lead_s}")
    if spec.panic_threshold is not None and not 1.0 < spec.panic_threshold <= 10.0:
        raise InvalidArgument(
            f"panic_threshold must be in (1, 10] (a multiple of the target), "
            f"got {spec.panic_threshold}"
        )
    if not 0.0 <= spec.drain_timeout_s <= 3600.0:
        raise InvalidArgument(f"drain_timeout_s must be 0..3600, got {spec.drain_timeout_s}")


def zone_of(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidArgument(
            f"timezone {quoted(name)} is not an IANA time zone (e.g. UTC, Europe/Berlin)"
        ) from exc


def validate_cron(expression: str, zone: ZoneInfo | None = None) -> None:
    """InvalidArgument unless `expression` is a five-field cron expression."""
    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise InvalidArgument(
            f"schedule cron {quoted(expression)} is not a five-field cron expression "
            '(minute hour day month weekday, e.g. "0 9 * * 1-5")'
        )
    # is_valid accepts some expressions that never fire (e.g. 30 February).
    try:
        croniter(expression, datetime(2026, 1, 1, tzinfo=zone)).get_next(datetime)
    except (ValueError, KeyError) as exc:
        raise InvalidArgument(f"schedule cron {quoted(expression)} never fires") from exc
