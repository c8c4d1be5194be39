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


# Classes a tenant may use without an admin's grant: every class but this one.
RESTRICTED_PRIORITY_CLASS = "critical"


def default_granted_classes() -> frozenset[str]:
    return frozenset(name for name in PRIORITY_CLASSES if name != RESTRICTED_PRIORITY_CLASS)


def preemptible_class_names() -> tuple[str, ...]:
    return tuple(c.name for c in PRIORITY_CLASSES.values() if c.preemptible)


def lowest_preemptible_value() -> int:
    return min((c.value for c in PRIORITY_CLASSES.values() if c.preemptible), default=0)


def configure_priority_classes(entries: list[dict[str, object]]) -> None:
    """Add or override classes (from a YAML list of name/value/preemptible/
    grace_s/min_runtime_s). Classes are never removed: stored allocations
    may still name them."""
    for entry in entries:
        try:
            name = str(entry["name"])
            value = int(str(entry["value"]))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"priority class {entry!r} needs a name and an integer value") from exc
        PRIORITY_CLASSES[name] = PriorityClass(
            name=name,
            value=value,
            preemptible=bool(entry.get("preemptible", False)),
            grace_s=float(str(entry.get("grace_s", 60.0))),
            min_runtime_s=float(str(entry.get("min_runtime_s", 0.0))),
        )
