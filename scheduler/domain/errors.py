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


def quoted(value: str, limit: int = 64) -> str:
    """`value` for an error message: its repr, cut to `limit` characters with the
    full length noted, so no request can make an error bigger than it should be
    (gRPC sends the message in a header, and clients cap headers at 16 KiB)."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} characters)"


class Unauthenticated(GpupoolError):
    """No credentials, or credentials that prove nothing (unknown, revoked, expired)."""


class Unavailable(GpupoolError):
    """A dependency (the database) cannot answer now; the caller may retry later."""


class LeaseLost(Unavailable):
    """This replica is no longer the leader: its leader-only work did not commit."""
