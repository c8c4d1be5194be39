"""Hypothesis strategies for any protobuf message, built from its descriptor.

Values lean towards what breaks servers: strings with NUL and other control
characters or 20,000 characters long, NaN and infinities, integers at the
edges of their types, enum numbers the enum does not define, long repeated
fields. Plausible values (catalogue names, node names of the mixed fleet,
faults) are mixed in so that requests also get past the first checks.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

HUGE = "x" * 20_000
PLAUSIBLE_STRINGS = (
    "team-a",
    "req-1",
    "h100-sxm-0",
    "a100-40-mig",
    "l4",
    "H100-80GB",
    "A100-40GB",
    "L4",
    "high",
    "batch",
    "3g.40gb",
    "1g.5gb",
    "llama-3.1-8b",
    "bf16",
    "xid=79",
    "lost",
    "temperature=95",
    "vllm",
    "gpu",
    "host_ram",
)
NASTY_STRINGS = ("", "a\x00b", "\x00", "tab\tnew\nline", "\x7f\x9f", "é日本", HUGE, "y" * 1025)
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_FLOATS = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)


def strings() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(PLAUSIBLE_STRINGS),
        st.sampled_from(NASTY_STRINGS),
        st.text(max_size=12),
        st.text(alphabet=st.characters(codec="ascii"), max_size=12),
    )


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = (low, high, 0, 1, 2**31 - 1, 2**31, 2**63 - 1, 2**63)
    return st.one_of(
        st.integers(max(low, 0), min(high, 16)),
        st.sampled_from([v for v in edges if low <= v <= high]),
        st.integers(low, high),
    )


def _floats() -> st.SearchStrategy[float]:
    return st.one_of(
        st.sampled_from([0.5, 1.0, 7.0, 70.0, 0.9]),
        st.floats(allow_nan=True, allow_infinity=True),
    )


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return strings()
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=32), st.just(b"\x00" * 70_000))
    if kind in _FLOATS:
        return _floats()
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        defined = sorted(field.enum_type.values_by_number)
        return st.one_of(st.sampled_from(defined), st.integers(-(2**31), 2**31 - 1))
    low, high = _INT_RANGES[kind]
    return _integers(low, high)


def _field(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        entry = field.message_type
        assert entry is not None
        if field.is_repeated and entry.GetOptions().map_entry:
            keys = _scalar(entry.fields_by_name["key"])
            value_field = entry.fields_by_name["value"]
            values = _field_value(value_field, depth)
            return st.dictionaries(keys, values, max_size=3)
        element = messages(entry, depth + 1)
    else:
        element = _scalar(field)
    if field.is_repeated:
        return st.one_of(
            st.lists(element, max_size=3),
            st.lists(element, min_size=1, max_size=1).map(lambda items: items * 1100),
        )
    return element


def _field_value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.message_type is not None:
        return messages(field.message_type, depth + 1)
    return _scalar(field)


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of this type with a random subset of fields set (none below depth 4)."""
    cls = GetMessageClass(descriptor)
    if depth > 3:
        return st.builds(cls)
    optional = {f.name: _deferred_field(f, depth) for f in descriptor.fields}
    return st.fixed_dictionaries({}, optional=optional).map(lambda kwargs: cls(**kwargs))


def _deferred_field(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    return st.deferred(lambda: _field(field, depth))
