"""What a client sees for database errors: an outage is UNAVAILABLE (retry),
a statement the driver refused to send is a bug: INTERNAL with a request id."""

from __future__ import annotations

import grpc
import psycopg
from sqlalchemy.exc import OperationalError

from scheduler.api.errors import status_of

TOO_MANY = "sending query and params failed: number of parameters must be between 0 and 65535"


def test_too_many_bind_parameters_is_internal_not_unavailable() -> None:
    for exc in (
        psycopg.OperationalError(TOO_MANY),
        OperationalError("SELECT …", {}, psycopg.OperationalError(TOO_MANY)),
    ):
        code, message = status_of(exc)
        assert code == grpc.StatusCode.INTERNAL
        assert "request id" in message and "65535" not in message


def test_a_lost_database_is_unavailable() -> None:
    lost = psycopg.OperationalError("server closed the connection unexpectedly")
    code, message = status_of(OperationalError("SELECT 1", {}, lost))
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "database is unavailable" in message
