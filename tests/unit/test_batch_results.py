"""Per-item results of the batched calls: each error carries the status the
single call would have ended with; an unexpected one only a request id."""

from __future__ import annotations

import logging

import grpc
import pytest

from gpupool.v1 import scheduler_pb2
from scheduler.api.batch_converters import allocation_specs, item_error
from scheduler.domain.errors import AlreadyExists, NotFound


def test_domain_errors_keep_their_code_and_message() -> None:
    assert item_error(NotFound("allocation x not found")) == scheduler_pb2.ItemError(
        code=scheduler_pb2.ERROR_CODE_NOT_FOUND, message="allocation x not found"
    )
    assert item_error(AlreadyExists("dup")).code == scheduler_pb2.ERROR_CODE_ALREADY_EXISTS
    assert item_error(TimeoutError()).code == scheduler_pb2.ERROR_CODE_UNAVAILABLE


def test_error_codes_are_numbered_as_grpc_status_codes() -> None:
    for code in grpc.StatusCode:
        if code is not grpc.StatusCode.OK:
            assert scheduler_pb2.ErrorCode.Value(f"ERROR_CODE_{code.name}") == code.value[0]


def test_an_unexpected_error_shows_only_a_request_id(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        error = item_error(RuntimeError("SELECT secret FROM tokens"))
    assert error.code == scheduler_pb2.ERROR_CODE_INTERNAL
    assert "secret" not in error.message
    request_id = error.message.removeprefix("internal error (request id ").removesuffix(")")
    assert request_id and request_id in caplog.text and "secret" in caplog.text


def test_a_request_the_converter_refuses_is_refused_alone() -> None:
    good = scheduler_pb2.AllocateRequest(request_id="a", whole={"count": 1})
    specs = allocation_specs([good, scheduler_pb2.AllocateRequest(request_id="b")])
    assert not isinstance(specs[0], BaseException) and specs[0].request_id == "a"
    assert item_error(specs[1]).code == scheduler_pb2.ERROR_CODE_INVALID_ARGUMENT  # type: ignore[arg-type]
