"""Checkpoint-coordinated preemption: which running allocations make room, purely."""

from scheduler.preemption.running import RunningAllocation, gpus_held, is_eligible, lost_work
from scheduler.preemption.victims import VictimChoice, choose_victims, choose_victims_naive

__all__ = [
    "RunningAllocation",
    "VictimChoice",
    "choose_victims",
    "choose_victims_naive",
    "gpus_held",
    "is_eligible",
    "lost_work",
]
