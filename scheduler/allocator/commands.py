"""What RPC threads and loops hand to the allocator's worker thread."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from scheduler.domain.allocation import AllocationSpec


@dataclass
class Command:
    future: Future[Any] = field(default_factory=Future, init=False)
    # time.monotonic() after which the caller has stopped waiting: the command
    # is dropped, never applied after its caller was told it failed.
    deadline: float | None = field(default=None, init=False)


@dataclass
class Allocate(Command):
    spec: AllocationSpec


@dataclass
class Release(Command):
    allocation_id: str
    reason: str
    # A service caller may release only its tenant's work: checked against the
    # locked row inside the batch, so it costs no extra round trip.
    tenant: str | None = None


@dataclass
class PendingPass(Command):
    pass


@dataclass
class Requeue(Command):
    """Take placed allocations off their GPUs (failure, drain): requeue or
    fail each per its on_failure policy."""

    allocation_ids: tuple[str, ...]
    reason: str
    leader_only: bool = False  # a liveness decision: fenced by the leader's epoch


@dataclass
class Preempt(Command):
    """Ask victims to checkpoint: they turn preempting with a deadline."""

    allocation_ids: tuple[str, ...]
    preempted_for: str
    grace_s: float
    reason: str


@dataclass
class Revoke(Command):
    """Take a preempting allocation off its GPUs and requeue it to resume
    from its checkpoint: on acknowledgement or at its deadline."""

    allocation_id: str
    checkpoint_uri: str
    how: str  # "acknowledged" | "deadline"
    by: str = ""  # who acknowledged, for the history


def take_batch(
    waiting: Sequence[Command], max_batch: int, per_tenant: int
) -> tuple[list[Command], list[Command]]:
    """The next batch from the commands waiting in arrival order, and the rest:
    at most `per_tenant` new requests of one tenant and `max_batch` in all.
    What is left keeps its order and goes first next time."""
    batch: list[Command] = []
    rest: list[Command] = []
    taken: Counter[str] = Counter()
    for command in waiting:
        tenant = command.spec.tenant if isinstance(command, Allocate) else None
        if len(batch) >= max_batch or (tenant is not None and taken[tenant] >= per_tenant):
            rest.append(command)
            continue
        if tenant is not None:
            taken[tenant] += 1
        batch.append(command)
    return batch, rest
