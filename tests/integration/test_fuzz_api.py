"""Fuzzing the public gRPC API: every RPC answers with a deliberate status code.

Requests are generated from the descriptors (tests/proto_strategies.py): NUL
and control characters, 20,000-character strings, NaN and infinities,
integers at their edges, undefined enum numbers, long lists. Whatever comes
in, the answer is OK or a code the server chose (INVALID_ARGUMENT,
NOT_FOUND, FAILED_PRECONDITION …), never UNKNOWN, INTERNAL or ABORTED, with
a message small enough for the client's metadata limit; and a rejected
request stores nothing. The items of a batched call (AllocateMany,
ReleaseMany) are held to the same rule, each on its own.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from gpupool.v1 import admin_pb2, agents_pb2, scheduler_pb2, types_pb2
from scheduler.app import SchedulerApp
from tests.integration.conftest import Client
from tests.proto_strategies import messages

SERVICES = {
    "scheduler": scheduler_pb2.DESCRIPTOR.services_by_name["Scheduler"],
    "admin": admin_pb2.DESCRIPTOR.services_by_name["Admin"],
    "agents": agents_pb2.DESCRIPTOR.services_by_name["Agents"],
}
# Client streams (Agents.Connect) are a protocol of their own, not one request.
METHODS = [
    (stub, method)
    for stub, service in SERVICES.items()
    for method in service.methods
    if not method.client_streaming
]
NOT_DELIBERATE = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.ABORTED}
# Row counts that a rejected request must leave alone (placement passes after
# an earlier accepted request may still add claims and events meanwhile).
FINGERPRINT = "SELECT " + ", ".join(
    f"(SELECT count(*) FROM {table})" for table in ("allocations", "nodes", "gpus", "tenants")
)
# Valid requests that fuzzed fields are merged into, half of the time, so that
# a request gets past the first checks and its odd field reaches deeper code.
TEMPLATES: dict[str, Message] = {
    "gpupool.v1.AllocateRequest": scheduler_pb2.AllocateRequest(
        tenant="team-a",
        request_id="fuzz",
        fraction=types_pb2.FractionalGpu(milli_gpu=100, memory_mib=1000),
    ),
    "gpupool.v1.AllocateManyRequest": scheduler_pb2.AllocateManyRequest(
        requests=[
            scheduler_pb2.AllocateRequest(
                tenant="team-a",
                request_id="fuzz-many",
                fraction=types_pb2.FractionalGpu(milli_gpu=100, memory_mib=1000),
            )
        ]
    ),
    "gpupool.v1.SetTenantQuotaRequest": admin_pb2.SetTenantQuotaRequest(
        name="team-a", quota_units=1.0
    ),
    "gpupool.v1.InjectFaultRequest": admin_pb2.InjectFaultRequest(node="l4", fault="lost"),
    "gpupool.v1.HeartbeatRequest": agents_pb2.HeartbeatRequest(node="l4"),
    "gpupool.v1.RegisterNodeRequest": agents_pb2.RegisterNodeRequest(
        name="fuzz-node",
        gpus=[types_pb2.GpuSpec(uuid="GPU-fuzz-0", index=0, model="L4", memory_mib=23034)],
    ),
}
UNARY_TIMEOUT_S = 30.0
STREAM_TIMEOUT_S = 1.0
MAX_DETAILS = 2048


def fingerprint(app: SchedulerApp) -> tuple[Any, ...]:
    with app.engine.connect() as conn:
        return tuple(conn.execute(text(FINGERPRINT)).one())


def call(
    client: Client, stub: str, method: MethodDescriptor, request: Message
) -> tuple[grpc.RpcError | None, Any]:
    """The call's error, or None and a unary call's response when it
    succeeded; server streams are read to their end or for STREAM_TIMEOUT_S
    (a follow or watch runs until cancelled)."""
    rpc = getattr(getattr(client, stub), method.name)
    try:
        if method.server_streaming:
            for _ in rpc(request, timeout=STREAM_TIMEOUT_S):
                pass
            return None, None
        return None, rpc(request, timeout=UNARY_TIMEOUT_S)
    except grpc.RpcError as error:
        return error, None


def item_errors(response: Any) -> list[tuple[str, str]]:
    """(code name, message) of each failed item of a batched call's response."""
    errors = []
    for result in getattr(response, "results", ()):
        if result.WhichOneof("result") == "error":
            name = scheduler_pb2.ErrorCode.Name(result.error.code).removeprefix("ERROR_CODE_")
            errors.append((name, result.error.message))
    return errors


def an_allocation(client: Client) -> str:
    request = scheduler_pb2.AllocateRequest(
        tenant="team-a",
        request_id="fuzz-seed",
        fraction=types_pb2.FractionalGpu(milli_gpu=100, memory_mib=1000),
    )
    return client.scheduler.Allocate(request).allocation.id


@pytest.mark.parametrize(("stub", "method"), METHODS, ids=[f"{s}.{m.name}" for s, m in METHODS])
def test_every_rpc_answers_fuzzed_requests_deliberately(
    fleet_client: Client, app: SchedulerApp, stub: str, method: MethodDescriptor
) -> None:
    real_id = an_allocation(fleet_client)
    has_allocation_id = "allocation_id" in method.input_type.fields_by_name

    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        request = data.draw(messages(method.input_type), label="request")
        template = TEMPLATES.get(method.input_type.full_name)
        if template is not None and data.draw(st.booleans(), label="from a valid request"):
            fuzzed, request = request, type(template)()
            request.CopyFrom(template)
            request.MergeFrom(fuzzed)
        if has_allocation_id and data.draw(st.booleans(), label="real allocation id"):
            request.allocation_id = real_id  # type: ignore[attr-defined]
        before = fingerprint(app)
        error, response = call(fleet_client, stub, method, request)
        if error is None:
            for name, details in item_errors(response):
                assert grpc.StatusCode[name] not in NOT_DELIBERATE, f"{method.name}: {name}"
                assert len(details) <= MAX_DETAILS, f"{method.name}: {len(details)}-character item"
            return
        code, details = error.code(), error.details() or ""
        assert code not in NOT_DELIBERATE, f"{method.name}: {code.name} {details[:500]}"
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            assert method.server_streaming, f"{method.name} hung for {UNARY_TIMEOUT_S}s"
            return
        assert len(details) <= MAX_DETAILS, f"{method.name}: {len(details)}-character message"
        assert details != "Stream removed", f"{method.name}: the error overflowed the metadata"
        assert fingerprint(app) == before, f"{method.name} stored a rejected request"

    fuzz()
