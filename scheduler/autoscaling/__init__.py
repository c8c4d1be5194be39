"""The autoscaler's pure decision (issue 13): spec, replica views, history, decide().

No grpc, no SQLAlchemy, no wall clock: the reconcile loop passes `now`.
"""

from scheduler.autoscaling.decide import Decision, decide
from scheduler.autoscaling.schedule import ActiveMinimum, scheduled_minimum
from scheduler.autoscaling.spec import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    DEFAULT_TARGET_KV_UTILISATION,
    DEFAULT_TOLERANCE,
    AutoscalingSpec,
    RatePolicy,
    ScalingBehavior,
    ScheduledMinimum,
    validate,
    validate_cron,
)
from scheduler.autoscaling.state import (
    History,
    Recommendation,
    ReplicaState,
    ReplicaView,
    ScaleChange,
)

__all__ = [
    "DEFAULT_SCALE_DOWN",
    "DEFAULT_SCALE_UP",
    "DEFAULT_TARGET_KV_UTILISATION",
    "DEFAULT_TOLERANCE",
    "ActiveMinimum",
    "AutoscalingSpec",
    "Decision",
    "History",
    "RatePolicy",
    "Recommendation",
    "ReplicaState",
    "ReplicaView",
    "ScaleChange",
    "ScalingBehavior",
    "ScheduledMinimum",
    "decide",
    "scheduled_minimum",
    "validate",
    "validate_cron",
]
