"""One small error hierarchy; the API layer maps each class to a gRPC status."""

from __future__ import annotations


class GpupoolError(Exception):
    """Base class; `message` is meant for the person who made the request."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(GpupoolError):
    pass


class NotFound(GpupoolError):
    pass


class AlreadyExists(GpupoolError):
    pass


class FailedPrecondition(GpupoolError):
    pass


class ResourceExhausted(GpupoolError):
    pass


class PermissionDenied(GpupoolError):
    pass


class Aborted(GpupoolError):
    """A lost race that retries did not win; the caller may retry."""
