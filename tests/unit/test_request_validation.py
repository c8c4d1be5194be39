"""The generic request validator at the API edge (scheduler/api/validation.py)."""

from __future__ import annotations

import math

import pytest
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpupool.v1 import admin_pb2, agents_pb2, scheduler_pb2, types_pb2
from scheduler.api import validation
from scheduler.api.validation import validate_request
from scheduler.domain.errors import InvalidArgument
from tests.proto_strategies import messages

SERVICES = [
    scheduler_pb2.DESCRIPTOR.services_by_name["Scheduler"],
    admin_pb2.DESCRIPTOR.services_by_name["Admin"],
    agents_pb2.DESCRIPTOR.services_by_name["Agents"],
]
REQUEST_TYPES = sorted(
    {m.input_type.full_name: m.input_type for s in SERVICES for m in s.methods}.items()
)


def typical_allocate_request() -> scheduler_pb2.AllocateRequest:
    return scheduler_pb2.AllocateRequest(
        tenant="team-a",
        request_id="req-000123",
        whole=types_pb2.WholeGpus(count=4),
        gpu_models=["H100-80GB", "H200"],
        priority_class="high",
        workload_class=types_pb2.WORKLOAD_CLASS_LATENCY_CRITICAL,
        model="llama-3.1-70b",
        labels={"team": "search", "env": "prod", "owner": "alice"},
        on_failure=types_pb2.FAILURE_POLICY_REQUEUE,
        layout=types_pb2.ParallelLayout(tp=4),
        worker=types_pb2.WorkerSpec(
            template="vllm",
            args={"model": "meta-llama/Llama-3.1-70B-Instruct"},
            env={"NCCL_DEBUG": "INFO"},
        ),
    )


def rejected(message: Message) -> str:
    with pytest.raises(InvalidArgument) as raised:
        validate_request(message)
    return raised.value.message


def test_ordinary_requests_pass() -> None:
    validate_request(typical_allocate_request())
    validate_request(
        agents_pb2.RegisterNodeRequest(
            name="h100-sxm-0",
            labels={"zone": "zone-a"},
            gpus=[types_pb2.GpuSpec(uuid="GPU-1", index=0, model="H100-80GB", memory_mib=81559)],
        )
    )
    validate_request(admin_pb2.SetTenantQuotaRequest(name="team-a", quota_units=4.5, weight=2))
    validate_request(
        agents_pb2.AgentMessage(
            workers=agents_pb2.WorkerReport(
                workers=[types_pb2.WorkerStatus(allocation_id="a", reason="exited 1:\nTraceback")]
            )
        )
    )


@pytest.mark.parametrize(("name", "descriptor"), REQUEST_TYPES)
def test_every_empty_request_passes(name: str, descriptor: Descriptor) -> None:
    validate_request(GetMessageClass(descriptor)())


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            scheduler_pb2.AllocateRequest(model_spec=types_pb2.ModelSpec(params_billion=math.nan)),
            "model_spec.params_billion must be a finite number, got nan",
        ),
        (
            admin_pb2.SetTenantQuotaRequest(name="t", quota_units=math.inf),
            "quota_units must be a finite number, got inf",
        ),
        (
            admin_pb2.SetTenantQuotaRequest(name="t", weight=-math.inf),
            "weight must be a finite number, got -inf",
        ),
        (
            agents_pb2.HeartbeatRequest(
                node="n", health=[agents_pb2.GpuHealthReport(temperature_c=math.nan)]
            ),
            "health[0].temperature_c must be a finite number, got nan",
        ),
    ],
)
def test_non_finite_numbers_are_rejected_with_their_path(request_: Message, message: str) -> None:
    assert rejected(request_) == message


@pytest.mark.parametrize(
    ("request_", "path"),
    [
        (scheduler_pb2.GetAllocationRequest(allocation_id="a\x00b"), "allocation_id"),
        (scheduler_pb2.AllocateRequest(tenant="team\x01"), "tenant"),
        (scheduler_pb2.AllocateRequest(gpu_models=["L4", "H100\x00"]), "gpu_models[1]"),
        (scheduler_pb2.AllocateRequest(labels={"zone": "a\x7f"}), "labels['zone']"),
        (scheduler_pb2.AllocateRequest(labels={"zo\x00ne": "a"}), "labels key"),
        (scheduler_pb2.AllocateRequest(mig=types_pb2.MigSlice(profile="3g\x9f")), "mig.profile"),
        (
            scheduler_pb2.AllocateRequest(worker=types_pb2.WorkerSpec(env={"A": "line\nbreak"})),
            "worker.env['A']",
        ),
        (admin_pb2.NodeActionRequest(name="h100\n"), "name"),
        (
            agents_pb2.RegisterNodeRequest(
                gpus=[types_pb2.GpuSpec(), types_pb2.GpuSpec(uuid="\0")]
            ),
            "gpus[1].uuid",
        ),
        (
            agents_pb2.AgentMessage(
                workers=agents_pb2.WorkerReport(workers=[types_pb2.WorkerStatus(reason="a\x00")])
            ),
            "workers.workers[0].reason",
        ),
    ],
)
def test_control_characters_are_rejected_with_their_path(request_: Message, path: str) -> None:
    message = rejected(request_)
    assert message.startswith(f"{path} contains control character U+")


def test_free_text_fields_may_hold_line_breaks_and_tabs() -> None:
    for text in ("two\nlines", "tab\there", "crlf\r\n"):
        validate_request(agents_pb2.LogChunk(error=text))
        validate_request(types_pb2.WorkerStatus(reason=text))
        validate_request(agents_pb2.GpuHealthReport(reasons=[text]))
    with pytest.raises(InvalidArgument, match="U\\+0000"):
        validate_request(agents_pb2.LogChunk(error="nul\x00"))


def test_the_message_quotes_a_short_prefix_only() -> None:
    message = rejected(scheduler_pb2.AllocateRequest(tenant="\x00" * 1000))
    assert "(1000 characters)" in message
    assert len(message) < 300


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            scheduler_pb2.AllocateRequest(priority_class="x" * 20_000),
            "priority_class is 20000 characters long; the limit is 1024",
        ),
        (
            scheduler_pb2.GetAllocationRequest(allocation_id="a" * 1025),
            "allocation_id is 1025 characters long; the limit is 1024",
        ),
        (
            scheduler_pb2.ReportCheckpointRequest(checkpoint_uri="s3://" + "b" * 4092),
            "checkpoint_uri is 4097 characters long; the limit is 4096",
        ),
        (
            scheduler_pb2.AllocateRequest(labels={"k" * 2000: "v"}),
            "labels key is 2000 characters long; the limit is 1024",
        ),
    ],
)
def test_strings_over_their_limit_are_rejected(request_: Message, message: str) -> None:
    assert rejected(request_) == message


def test_per_field_string_limits_allow_longer_values() -> None:
    validate_request(scheduler_pb2.AckPreemptionRequest(checkpoint_uri="s3://" + "b" * 4000))
    worker = types_pb2.WorkerSpec(args={"config": "c" * 4096}, env={"E": "e" * 4096})
    validate_request(scheduler_pb2.AllocateRequest(worker=worker))
    too_long = types_pb2.WorkerSpec(args={"config": "c" * 4097})
    assert rejected(scheduler_pb2.AllocateRequest(worker=too_long)).startswith(
        "worker.args['config'] is 4097 characters long"
    )


def test_undefined_enum_numbers_are_rejected() -> None:
    message = rejected(scheduler_pb2.AllocateRequest(workload_class=42))  # type: ignore[arg-type]
    assert message.startswith("workload_class is 42: unknown workload_class (WorkloadClass")
    health = agents_pb2.GpuHealthReport(health=9)  # type: ignore[arg-type]
    assert rejected(agents_pb2.HeartbeatRequest(health=[health])).startswith("health[0].health")
    assert rejected(scheduler_pb2.ListAllocationsRequest(state=-1)).startswith("state is -1")  # type: ignore[arg-type]


def test_repeated_fields_and_maps_are_bounded() -> None:
    assert (
        rejected(scheduler_pb2.AllocateRequest(gpu_models=["L4"] * 1025))
        == "gpu_models has 1025 entries; the limit is 1024"
    )
    labels = {f"k{i}": "v" for i in range(1025)}
    assert rejected(scheduler_pb2.AllocateRequest(labels=labels)).startswith("labels has 1025")
    # A node's running allocations may number thousands (fractions of a milli-GPU each).
    validate_request(agents_pb2.ObservedAllocations(running_allocation_ids=["a"] * 5000))


def test_bytes_are_bounded() -> None:
    validate_request(agents_pb2.LogChunk(data=b"\x00" * (1024 * 1024)))
    assert rejected(agents_pb2.LogChunk(data=b"x" * (5 * 1024 * 1024))).startswith(
        "data is 5242880 bytes long"
    )


def test_unsigned_integers_must_fit_postgresql_signed_columns() -> None:
    gpu = types_pb2.GpuSpec(index=2**31)
    assert rejected(agents_pb2.RegisterNodeRequest(gpus=[gpu])) == (
        "gpus[0].index is 2147483648; the limit is 2147483647"
    )
    validate_request(admin_pb2.WorkerLogsRequest(tail_bytes=2**63 - 1))
    assert rejected(admin_pb2.WorkerLogsRequest(tail_bytes=2**63)).startswith("tail_bytes is")


def test_timestamps_must_be_between_year_1_and_9999() -> None:
    report = agents_pb2.WorkerReport(workers=[types_pb2.WorkerStatus(allocation_id="a")])
    stamp = report.workers[0].updated_at
    stamp.seconds = 2**62
    assert rejected(report) == "workers[0].updated_at must be a time from year 1 to 9999"
    stamp.seconds, stamp.nanos = 1_700_000_000, -1
    assert rejected(report).startswith("workers[0].updated_at")
    stamp.nanos = 5
    validate_request(report)


def test_every_override_names_a_real_field() -> None:
    """A typo in a table would silently fall back to the default."""
    fields = set()
    for module in (admin_pb2, agents_pb2, scheduler_pb2, types_pb2):
        for message in module.DESCRIPTOR.message_types_by_name.values():
            for descriptor in (message, *message.nested_types):
                fields |= {f.full_name for f in descriptor.fields}
    tables = (
        validation.STRING_LIMITS,
        validation.BYTES_LIMITS,
        validation.ITEM_LIMITS,
        validation.FREE_TEXT,
    )
    for table in tables:
        assert set(table) <= fields


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_any_request_is_accepted_or_rejected_with_a_short_message(data: st.DataObject) -> None:
    _, descriptor = data.draw(st.sampled_from(REQUEST_TYPES))
    message = data.draw(messages(descriptor))
    try:
        validate_request(message)
    except InvalidArgument as error:
        assert len(error.message) < 400


def test_a_typical_allocate_request_is_valid() -> None:
    # Its cost (about 8 µs) is a figure, not a test: see the README's Security section.
    validate_request(typical_allocate_request())
