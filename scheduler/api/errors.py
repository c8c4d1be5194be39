"""The gRPC status of an exception: the code of each class of the domain's
errors, and what the non-domain ones become (used by api/interceptor.py for a
whole call and by the batched RPCs for each item)."""

from __future__ import annotations

import logging
import uuid

import grpc
import psycopg
from sqlalchemy.exc import DBAPIError, OperationalError

from scheduler.domain import errors
from scheduler.store.database import refused_by_driver

log = logging.getLogger(__name__)

STATUS_CODES: dict[type[errors.GpupoolError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Aborted: grpc.StatusCode.ABORTED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
}


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The code and message a client sees for `exc`. Anything unexpected is
    logged with a request id and answered INTERNAL with only that id: no
    traceback, SQL or address reaches a client."""
    if isinstance(exc, errors.GpupoolError):
        # The nearest class with a code: a subclass (LeaseLost) keeps its parent's.
        for kind in type(exc).__mro__:
            if kind in STATUS_CODES:
                return STATUS_CODES[kind], exc.message  # type: ignore[index]
        return grpc.StatusCode.INTERNAL, exc.message
    if isinstance(exc, TimeoutError):
        return grpc.StatusCode.UNAVAILABLE, "the scheduler is overloaded; retry"
    if refused_by_driver(exc):
        pass  # a bug (too many bind parameters, …): INTERNAL with a request id, below
    elif isinstance(exc, OperationalError | psycopg.OperationalError | psycopg.InterfaceError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        log.warning("database unavailable: %s", exc.__class__.__name__)
        return grpc.StatusCode.UNAVAILABLE, "the scheduler's database is unavailable; retry"
    request_id = uuid.uuid4().hex[:12]
    log.error("request %s failed", request_id, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error (request id {request_id})"
