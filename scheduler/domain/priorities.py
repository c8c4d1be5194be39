"""Priority classes: a name callers use and the number the queue orders by."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PriorityClass:
    name: str
    value: int
    preemptible: bool
    # How long a victim of this class gets to checkpoint before it is revoked.
    grace_s: float = 60.0
    # Preemptible work is protected for this long after it is placed.
    min_runtime_s: float = 0.0


DEFAULT_PRIORITY_CLASS = "normal"

PRIORITY_CLASSES: dict[str, PriorityClass] = {
    c.name: c
    for c in (
        PriorityClass("critical", 1000, preemptible=False),
        PriorityClass("high", 100, preemptible=False),
        PriorityClass("normal", 50, preemptible=True, grace_s=120.0, min_runtime_s=300.0),
        PriorityClass("batch", 10, preemptible=True, grace_s=60.0, min_runtime_s=60.0),
    )
}
