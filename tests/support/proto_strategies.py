"""Hypothesis strategies for arbitrary protobuf messages, built from their descriptors.

Biased towards what breaks things: timestamps at and beyond protobuf's range, NaN and
infinities, negative durations, strings at and over the collector's caps, unknown enum
numbers, repeated names, and hostile markup. A field added to report.proto is covered
without touching this module.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

TS_MIN = -62_135_596_800
TS_MAX = 253_402_300_799
NOW = int(time.time())

_seconds = st.one_of(
    st.sampled_from(
        [TS_MIN - 1, TS_MIN, TS_MAX, TS_MAX + 1, 0, NOW, NOW - 86400, NOW + 3600, -1, 2**62]
    ),
    st.integers(min_value=NOW - 10**9, max_value=NOW + 10**9),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
_nanos = st.one_of(
    st.sampled_from([0, 999_999_999, 1_000_000_000, -1]),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
)
_hostile = st.sampled_from(
    [
        "",
        " ",
        "<script>alert(1)</script>",
        '"} 1\npreflight_fake 1',
        'a\\b"c\nd',
        "\u202eevil",
        "x" * 255,
        "x" * 256,
        "x" * 257,
        "y" * 2049,
        "z" * 70_000,
        "gcr.io/run-ai-prod",
        "/mnt/nas",
    ]
)
_text = st.one_of(_hostile, st.text(max_size=40))
_double = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, -1.0, 1e-9, 31_536_000.0, 31_536_001.0, 1e308]),
)
_INT_RANGES = {
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
}


def _int(low: int, high: int) -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from([low, high, 0, 1]), st.integers(min_value=low, max_value=high))


def _enum(field: FieldDescriptor) -> st.SearchStrategy[int]:
    assert field.enum_type is not None
    known = [v.number for v in field.enum_type.values]
    # Unknown numbers: what a newer agent would send.
    return st.one_of(st.sampled_from(known), st.sampled_from([99, 2**31 - 1, -5]))


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return _text
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return _double
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        return _enum(field)
    if kind in _INT_RANGES:
        return _int(*_INT_RANGES[kind])
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=32)
    raise NotImplementedError(f"no strategy for field type {kind} ({field.full_name})")


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        return messages(field.message_type, depth + 1)
    return _scalar(field)


@functools.cache
def _repeated(field: FieldDescriptor, depth: int) -> st.SearchStrategy[list[Any]]:
    item = _value(field, depth)
    plain = st.lists(item, max_size=3)
    # The same item twice: duplicate names are a classic.
    doubled = item.map(lambda v: [v, v])
    return st.one_of(plain, plain, doubled)


@functools.cache  # strategies are built once per message type, not once per draw
def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of `descriptor`'s type with any subset of fields set to nasty values."""
    if descriptor.full_name == "google.protobuf.Timestamp":
        cls = descriptor._concrete_class
        return st.builds(lambda s, n: cls(seconds=s, nanos=n), _seconds, _nanos)
    fields = list(descriptor.fields)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message: Message = descriptor._concrete_class()
        chosen = draw(st.lists(st.sampled_from(fields), unique=True, max_size=len(fields)))
        for field in chosen:
            if field.is_repeated:
                values = draw(_repeated(field, depth))
                container = getattr(message, field.name)
                for v in values:
                    if field.type == FieldDescriptor.TYPE_MESSAGE:
                        container.add().CopyFrom(v)
                    else:
                        container.append(v)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(message, field.name).CopyFrom(draw(_value(field, depth)))
            else:
                setattr(message, field.name, draw(_value(field, depth)))
        return message

    return build()
