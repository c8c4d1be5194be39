"""Bad input gets INVALID_ARGUMENT with an actionable message and stores nothing."""

from __future__ import annotations

import grpc
import pytest

from gpupool.v1 import scheduler_pb2, types_pb2
from tests.integration.conftest import Client

FRACTION = types_pb2.FractionalGpu(milli_gpu=100, memory_mib=1000)


def _base(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {"tenant": "team-a", "request_id": "bad", "fraction": FRACTION}
    fields.update(overrides)
    return fields


BAD_REQUESTS = {
    "missing request id": (_base(request_id=""), "request_id is required"),
    "missing tenant": (_base(tenant=""), "tenant is required"),
    "over-long tenant": (_base(tenant="t" * 500), "limit is 128"),
    "milli zero": (
        _base(fraction=types_pb2.FractionalGpu(milli_gpu=0, memory_mib=10)),
        "between 1 and 1000",
    ),
    "milli too big": (
        _base(fraction=types_pb2.FractionalGpu(milli_gpu=1001, memory_mib=10)),
        "between 1 and 1000",
    ),
    "memory larger than any GPU": (
        _base(fraction=types_pb2.FractionalGpu(milli_gpu=10, memory_mib=10_000_000)),
        "larger than any allowed GPU",
    ),
    "memory larger than the allowed model": (
        _base(fraction=types_pb2.FractionalGpu(milli_gpu=10, memory_mib=30_000), gpu_models=["L4"]),
        "largest: L4",
    ),
    "count zero": (_base(fraction=None, whole=types_pb2.WholeGpus(count=0)), "between 1 and 72"),
    "count larger than any node": (
        _base(fraction=None, whole=types_pb2.WholeGpus(count=500)),
        "between 1 and 72",
    ),
    "no resources": (_base(fraction=None), "exactly one of whole, fraction or mig"),
    "unknown MIG profile": (
        _base(fraction=None, mig=types_pb2.MigSlice(profile="5g.50gb")),
        "unknown MIG profile",
    ),
    "MIG profile of another model": (
        _base(fraction=None, mig=types_pb2.MigSlice(profile="3g.40gb"), gpu_models=["A100-40GB"]),
        "does not exist on A100-40GB",
    ),
    "MIG on a GPU without MIG": (
        _base(fraction=None, mig=types_pb2.MigSlice(profile="1g.10gb"), gpu_models=["L4"]),
        "no MIG support",
    ),
    "unknown GPU model": (_base(gpu_models=["RTX-9090"]), "unknown GPU model"),
    "unknown priority class": (_base(priority_class="urgent"), "unknown priority class"),
    "unknown workload class enum": (_base(workload_class=42), "unknown workload_class"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_allocate_is_invalid_argument(fleet_client: Client, case: str) -> None:
    fields, message = BAD_REQUESTS[case]
    fields = {k: v for k, v in fields.items() if v is not None}
    with pytest.raises(grpc.RpcError) as info:
        fleet_client.scheduler.Allocate(scheduler_pb2.AllocateRequest(**fields))  # type: ignore[arg-type]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (info.value.details() or "")
    listed = fleet_client.scheduler.ListAllocations(scheduler_pb2.ListAllocationsRequest())
    assert list(listed.allocations) == []


def test_unknown_state_filter_and_bad_page_token(fleet_client: Client) -> None:
    for request in (
        scheduler_pb2.ListAllocationsRequest(state=99),  # type: ignore[arg-type]
        scheduler_pb2.ListAllocationsRequest(page_token="not-a-token"),
        scheduler_pb2.ListAllocationsRequest(page_size=5000),
    ):
        with pytest.raises(grpc.RpcError) as info:
            fleet_client.scheduler.ListAllocations(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
