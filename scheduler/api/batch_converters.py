"""Wire format of the batched Scheduler calls (AllocateMany, ReleaseMany):
each item is converted on its own, and each outcome becomes a result that
carries the allocation or the status the single call would have ended with."""

from __future__ import annotations

from collections.abc import Iterable

from gpupool.v1 import scheduler_pb2
from scheduler.api.converters import allocation_message, allocation_spec
from scheduler.api.errors import status_of
from scheduler.domain.allocation import AllocationSpec
from scheduler.services.allocations import Outcome


def allocation_specs(
    requests: Iterable[scheduler_pb2.AllocateRequest],
) -> list[AllocationSpec | BaseException]:
    """Each request's spec, or why it has none (that request fails alone)."""
    specs: list[AllocationSpec | BaseException] = []
    for request in requests:
        try:
            specs.append(allocation_spec(request))
        except Exception as exc:
            specs.append(exc)
    return specs


def item_error(exc: BaseException) -> scheduler_pb2.ItemError:
    """ErrorCode spells each gRPC status code (never OK) as ERROR_CODE_<name>."""
    code, message = status_of(exc)
    return scheduler_pb2.ItemError(code=f"ERROR_CODE_{code.name}", message=message)


def allocate_result(outcome: Outcome) -> scheduler_pb2.AllocateResult:
    if isinstance(outcome, BaseException):
        return scheduler_pb2.AllocateResult(error=item_error(outcome))
    return scheduler_pb2.AllocateResult(allocation=allocation_message(outcome))


def release_result(outcome: Outcome) -> scheduler_pb2.ReleaseResult:
    if isinstance(outcome, BaseException):
        return scheduler_pb2.ReleaseResult(error=item_error(outcome))
    return scheduler_pb2.ReleaseResult(allocation=allocation_message(outcome))
