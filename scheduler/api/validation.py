"""Every request is checked at the edge, by its descriptor, before any use case.

`validate_request(message)` walks a request message (nested messages, repeated
fields, maps) and raises InvalidArgument for what no use case can take and
the database must never see:

- a string with a control character (C0, DEL, C1: NUL above all, which
  PostgreSQL cannot store in text or JSONB); free-text fields in FREE_TEXT
  may hold tab, newline and carriage return;
- a string longer than STRING_LIMITS names for its field, else MAX_STRING
  characters (a safety net: use cases enforce tighter limits of their own,
  e.g. 128 for a tenant);
- bytes longer than BYTES_LIMITS or MAX_BYTES;
- a float or double that is NaN or infinite;
- an enum number the enum does not define (proto3 enums are open on the wire);
- a repeated field or map with more than ITEM_LIMITS or MAX_ITEMS entries;
- an unsigned integer beyond its signed range (PostgreSQL has no unsigned
  columns: a uint32 must fit an INTEGER, a uint64 a BIGINT);
- a google.protobuf.Timestamp outside 0001-01-01..9999-12-31.

Messages name the field's path (`model_spec.params_billion`, `gpus[3].uuid`,
`labels['zone']`) and quote at most a short prefix of the value, so an error
never outgrows a client's metadata limit.

Rules are derived once per field descriptor and cached; a typical
AllocateRequest costs a few microseconds (see tests/unit/test_request_validation.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from scheduler.domain.errors import InvalidArgument, quoted
from scheduler.services.allocations import MAX_BATCH_ITEMS

MAX_STRING = 1024
MAX_BYTES = 64 * 1024
MAX_ITEMS = 1024
QUOTE_LIMIT = 32

# Per-field overrides, by full field name (map entries: `<Message>.<Field>Entry.key|value`).
STRING_LIMITS: dict[str, int] = {
    # Object-store URIs with long prefixes and signed query strings.
    "gpupool.v1.AckPreemptionRequest.checkpoint_uri": 4096,
    "gpupool.v1.ReportCheckpointRequest.checkpoint_uri": 4096,
    # Worker template arguments and environment (the template checks args at 4096 too).
    "gpupool.v1.WorkerSpec.ArgsEntry.value": 4096,
    "gpupool.v1.WorkerSpec.EnvEntry.value": 4096,
    # Agents' free-text explanations.
    "gpupool.v1.WorkerStatus.reason": 4096,
    "gpupool.v1.LogChunk.error": 4096,
}
BYTES_LIMITS: dict[str, int] = {
    # A chunk of a worker's log, relayed as it comes (gRPC's default message cap is 4 MiB).
    "gpupool.v1.LogChunk.data": 4 * 1024 * 1024,
}
ITEM_LIMITS: dict[str, int] = {
    # A node's allocations: fractional GPUs go down to 1 milli-GPU, so thousands are possible.
    "gpupool.v1.AgentHello.running_allocation_ids": 65_536,
    "gpupool.v1.ObservedAllocations.running_allocation_ids": 65_536,
    "gpupool.v1.AgentHello.workers": 65_536,
    "gpupool.v1.WorkerReport.workers": 65_536,
    # Batched calls: the use case's cap, so the edge refuses the same count in the same words.
    "gpupool.v1.AllocateManyRequest.requests": MAX_BATCH_ITEMS,
    "gpupool.v1.ReleaseManyRequest.allocation_ids": MAX_BATCH_ITEMS,
}
# Free text written by programs (exception messages, health reasons): may hold
# tab, newline and carriage return. Every other string is an identifier or a
# value on one line.
FREE_TEXT: frozenset[str] = frozenset(
    {
        "gpupool.v1.WorkerStatus.reason",
        "gpupool.v1.LogChunk.error",
        "gpupool.v1.GpuHealthReport.reasons",
    }
)

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_UNSIGNED_MAX = {
    FieldDescriptor.TYPE_UINT32: 2**31 - 1,
    FieldDescriptor.TYPE_FIXED32: 2**31 - 1,
    FieldDescriptor.TYPE_UINT64: 2**63 - 1,
    FieldDescriptor.TYPE_FIXED64: 2**63 - 1,
}
_FLOATS = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)
_TIMESTAMP = "google.protobuf.Timestamp"
_TIMESTAMP_SECONDS = (-62_135_596_800, 253_402_300_799)  # 0001-01-01 .. 9999-12-31T23:59:59

# A scalar check: None when the value is fine, else what is wrong with it
# (the caller puts the field's path in front).
_Check = Callable[[Any], str | None]


@dataclass(frozen=True)
class _Rule:
    check: _Check | None  # scalars; None for messages
    message: bool
    repeated: bool
    max_items: int
    map_key: _Rule | None = None
    map_value: _Rule | None = None
    timestamp: bool = False


def validate_request(message: Message) -> None:
    """InvalidArgument naming the first field of `message` that is out of bounds."""
    _check_message(message, "")


def _check_message(message: Message, prefix: str) -> None:
    for field, value in message.ListFields():
        rule = _RULES.get(field) or _rule(field)
        check = rule.check
        if not rule.repeated:
            if check is None:
                _check_value(rule, value, prefix + field.name)
            elif (problem := check(value)) is not None:
                raise InvalidArgument(f"{prefix}{field.name} {problem}")
            continue
        path = prefix + field.name
        if len(value) > rule.max_items:
            raise InvalidArgument(f"{path} has {len(value)} entries; the limit is {rule.max_items}")
        if rule.map_key is not None and rule.map_value is not None:
            _check_map(rule.map_key, rule.map_value, value, path)
        elif check is not None:
            for index, item in enumerate(value):
                if (problem := check(item)) is not None:
                    raise InvalidArgument(f"{path}[{index}] {problem}")
        else:
            for index, item in enumerate(value):
                _check_value(rule, item, f"{path}[{index}]")


def _check_value(rule: _Rule, value: Any, path: str) -> None:
    if rule.check is not None:
        if (problem := rule.check(value)) is not None:
            raise InvalidArgument(f"{path} {problem}")
    elif rule.timestamp:
        _check_timestamp(value, path)
    else:
        _check_message(value, path + ".")


def _check_map(key_rule: _Rule, value_rule: _Rule, entries: Any, path: str) -> None:
    check_key, check_value = key_rule.check, value_rule.check
    for key, value in entries.items():
        if check_key is not None and (problem := check_key(key)) is not None:
            raise InvalidArgument(f"{path} key {problem}")
        if check_value is None:
            _check_value(value_rule, value, f"{path}[{_shown(key)}]")
        elif (problem := check_value(value)) is not None:
            raise InvalidArgument(f"{path}[{_shown(key)}] {problem}")


def _shown(key: object) -> str:
    return quoted(key, QUOTE_LIMIT) if isinstance(key, str) else str(key)


def _check_timestamp(value: Any, path: str) -> None:
    low, high = _TIMESTAMP_SECONDS
    if not low <= value.seconds <= high or not 0 <= value.nanos < 1_000_000_000:
        raise InvalidArgument(f"{path} must be a time from year 1 to 9999")


_RULES: dict[FieldDescriptor, _Rule] = {}


def _rule(field: FieldDescriptor) -> _Rule:
    """The rule of `field`, derived once and kept in _RULES (descriptors live forever)."""
    rule = _RULES.get(field)
    if rule is None:
        rule = _RULES[field] = _derive_rule(field)
    return rule


def _derive_rule(field: FieldDescriptor) -> _Rule:
    repeated = field.is_repeated
    max_items = ITEM_LIMITS.get(field.full_name, MAX_ITEMS)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        entry = field.message_type
        assert entry is not None  # every message field has its type
        if repeated and entry.GetOptions().map_entry:
            key = _rule(entry.fields_by_name["key"])
            value = _rule(entry.fields_by_name["value"])
            return _Rule(None, True, True, max_items, map_key=key, map_value=value)
        return _Rule(None, True, repeated, max_items, timestamp=entry.full_name == _TIMESTAMP)
    return _Rule(_scalar_check(field), False, repeated, max_items)


def _scalar_check(field: FieldDescriptor) -> _Check | None:
    name = field.full_name
    if field.type == FieldDescriptor.TYPE_STRING:
        return _string_check(STRING_LIMITS.get(name, MAX_STRING), name in FREE_TEXT)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return _bytes_check(BYTES_LIMITS.get(name, MAX_BYTES))
    if field.type in _FLOATS:
        return _finite
    if field.type == FieldDescriptor.TYPE_ENUM:
        return _enum_check(field)
    if field.type in _UNSIGNED_MAX:
        return _unsigned_check(_UNSIGNED_MAX[field.type])
    return _anything


def _string_check(limit: int, free_text: bool) -> _Check:
    control = _CONTROL_IN_TEXT if free_text else _CONTROL

    def check(value: str) -> str | None:
        if len(value) > limit:
            return f"is {len(value)} characters long; the limit is {limit}"
        if value.isprintable():  # the fast path: no control character at all
            return None
        found = control.search(value)
        if found is None:
            return None
        return (
            f"contains control character U+{ord(found.group()):04X} at position "
            f"{found.start()}: {quoted(value, QUOTE_LIMIT)}"
        )

    return check


def _bytes_check(limit: int) -> _Check:
    def check(value: bytes) -> str | None:
        if len(value) > limit:
            return f"is {len(value)} bytes long; the limit is {limit}"
        return None

    return check


def _finite(value: float) -> str | None:
    return None if math.isfinite(value) else f"must be a finite number, got {value}"


def _enum_check(field: FieldDescriptor) -> _Check:
    enum = field.enum_type
    assert enum is not None  # every enum field has its type
    known = frozenset(enum.values_by_number)
    numbers = ", ".join(map(str, sorted(known)))

    def check(value: int) -> str | None:
        if value in known:
            return None
        return f"is {value}: unknown {field.name} ({enum.name} defines {numbers})"

    return check


def _unsigned_check(limit: int) -> _Check:
    def check(value: int) -> str | None:
        return None if value <= limit else f"is {value}; the limit is {limit}"

    return check


def _anything(value: object) -> str | None:
    return None
