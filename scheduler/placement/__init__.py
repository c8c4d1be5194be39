"""The pure placement engine: a fleet snapshot and a request in, a placement or reasons out."""

from scheduler.placement.engine import (
    Placement,
    PlacementConfig,
    PlacementOutcome,
    Rejection,
    config_for_policy,
    place,
)
from scheduler.placement.plugins import DEFAULT_SCORE_WEIGHTS

__all__ = [
    "DEFAULT_SCORE_WEIGHTS",
    "Placement",
    "PlacementConfig",
    "PlacementOutcome",
    "Rejection",
    "config_for_policy",
    "place",
]
