"""Priority classes: a name callers use and the number the queue orders by."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PriorityClass:
    name: str
    value: int
    preemptible: bool


DEFAULT_PRIORITY_CLASS = "normal"

PRIORITY_CLASSES: dict[str, PriorityClass] = {
    c.name: c
    for c in (
        PriorityClass("critical", 1000, preemptible=False),
        PriorityClass("high", 100, preemptible=False),
        PriorityClass("normal", 50, preemptible=True),
        PriorityClass("batch", 10, preemptible=True),
    )
}
