"""What preemption knows about a running allocation, and what losing it costs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from scheduler.domain.catalogue import MIG_COMPUTE_SLICES
from scheduler.domain.fleet import Claim


@dataclass(frozen=True)
class RunningAllocation:
    """One allocation holding GPUs now. A TP/PP gang is one allocation: preempted whole."""

    id: str
    priority: int  # numeric priority; higher wins
    preemptible: bool  # its priority class allows preemption
    protected_until: float  # epoch seconds; minimum-runtime protection: no victim before this
    claims: tuple[Claim, ...]  # everything it holds, on any number of GPUs and nodes
    last_checkpoint_at: float  # epoch seconds of its last checkpoint, or its start if none
    started_at: float
    tenant: str = ""


def gpus_held(claims: Iterable[Claim]) -> float:
    """GPU-equivalents: a whole GPU 1, a fraction milli/1000, a MIG slice compute/7."""
    milli = slices = 0
    for claim in claims:  # a plain loop: this runs for every eligible allocation per decision
        if claim.mig_profile is None:
            milli += claim.milli
        else:
            slices += claim.mig_compute
    return milli / 1000 + slices / MIG_COMPUTE_SLICES


def lost_work(allocation: RunningAllocation, now: float) -> float:
    """GPU-seconds computed since the last checkpoint, which a preemption now throws away."""
    return max(0.0, now - allocation.last_checkpoint_at) * gpus_held(allocation.claims)


def is_eligible(allocation: RunningAllocation, priority: int, now: float) -> bool:
    """May `allocation` be preempted for a request of `priority` at time `now`?"""
    return (
        allocation.preemptible
        and allocation.priority < priority
        and allocation.protected_until <= now
    )
