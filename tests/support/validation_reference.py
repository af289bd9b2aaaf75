"""The descriptor walk that collector.validation compiled away, kept as the reference.

A property test (tests/collector/test_validation_compiled.py) checks that the compiled
checks refuse exactly what this walk refuses, for the same reason, and shorten the same
free text. Not used by the collector.

Original module docstring follows.

Validation at the border: every field of an incoming NodeReport, checked once, before storage.

Everything downstream (rules, /metrics, the JSON API, the status page) may then rely
on a stored report being sane: timestamps inside protobuf's range (and, for event
times, not absurdly far from the collector's clock), numbers finite and non-negative,
names unique within a report, label values of bounded length, lists of bounded
length. Free text is cut to `limits.max_text_length` instead of refused: a long error
message must not make a real node disappear. Unknown enum values (a newer agent) are
kept; `preflight.enums` names them "unknown".

The walk is driven by the message descriptors, so a field added to report.proto is
covered by the generic rules of its type without touching this module; only fields
that need a specific rule (labels, uniqueness, counts) are named below.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from collector.config import LimitsConfig
from collector.validation import Rejected
from preflight.enums import PHASES
from preflight.v1 import report_pb2 as pb

TIMESTAMP = "google.protobuf.Timestamp"
# protobuf's Timestamp range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
TIMESTAMP_MIN_SECONDS = -62_135_596_800
TIMESTAMP_MAX_SECONDS = 253_402_300_799
# Certificates carry the issuer's dates, not the agent's clock: RFC 5280 even uses
# 9999-12-31 for "no expiry". Only protobuf's range applies to them.
CERTIFICATE_TIMES = frozenset(
    {"preflight.v1.Certificate.not_before", "preflight.v1.Certificate.not_after"}
)
# Every double in the report is a duration in seconds; more than a year is no probe.
MAX_SECONDS = 365 * 86400.0
# Strings that become Prometheus label values (and page columns): refused when too long.
LABEL_FIELDS = frozenset(
    {
        "preflight.v1.NodeReport.agent_version",
        "preflight.v1.HardwareFacts.kernel_release",
        "preflight.v1.HardwareFacts.os_release",
        "preflight.v1.HardwareFacts.architecture",
        "preflight.v1.MountResult.path",
        "preflight.v1.EgressResult.target",
        "preflight.v1.Certificate.sha256_fingerprint",
        "preflight.v1.PeerMarker.node_name",
    }
)
# Repeated fields with their own configured bound (checked first, with their reason).
COUNTED = {
    "preflight.v1.NodeReport.egress": ("too_many_targets", "max_targets"),
    "preflight.v1.NodeReport.mounts": ("too_many_mounts", "max_mounts"),
}
ELLIPSIS = "…"


def _is_timestamp(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.full_name == TIMESTAMP


def _unique(where: str, values: Iterable[object]) -> None:
    seen: set[object] = set()
    for value in values:
        if value in seen:
            raise Rejected("duplicate_name", f"{where} {value!r} appears more than once")
        seen.add(value)


def _check_names(report: pb.NodeReport) -> None:
    """Names that key a series or a table row must be unique within one report."""
    _unique("egress target", (e.target for e in report.egress))
    _unique("mount path", (m.path for m in report.mounts))
    for e in report.egress:
        # By name: two unknown phase numbers would both be labelled "unknown".
        _unique(f"phase of target {e.target!r}", (PHASES.name(p.phase) for p in e.phases))
    _unique("GPU index", (d.index for d in report.gpus.devices))
    _unique("GPU uuid", (d.uuid for d in report.gpus.devices if d.uuid))
    _unique("PCI address", (d.address for d in report.gpus.pci_devices if d.address))


class _Walker:
    def __init__(self, limits: LimitsConfig, now: float) -> None:
        self.limits = limits
        self.now = now

    def timestamp(self, where: str, full_name: str, value: Message) -> None:
        seconds: int = value.seconds  # type: ignore[attr-defined]
        nanos: int = value.nanos  # type: ignore[attr-defined]
        if not (TIMESTAMP_MIN_SECONDS <= seconds <= TIMESTAMP_MAX_SECONDS) or not (
            0 <= nanos <= 999_999_999
        ):
            raise Rejected("invalid_timestamp", f"{where} outside protobuf's Timestamp range")
        if full_name in CERTIFICATE_TIMES:
            return
        offset = abs(seconds + nanos / 1e9 - self.now)
        if offset > self.limits.max_timestamp_offset:
            raise Rejected(
                "invalid_timestamp",
                f"{where} is {offset:.0f}s from the collector's clock, "
                f"limit {self.limits.max_timestamp_offset:.0f}s",
            )

    def string(self, where: str, full_name: str, value: str, parent: Message, field: str) -> None:
        if full_name in LABEL_FIELDS:
            if len(value) > self.limits.max_label_length:
                raise Rejected(
                    "label_too_long",
                    f"{where} has {len(value)} characters, limit {self.limits.max_label_length}",
                )
        elif len(value) > self.limits.max_text_length:
            cut = value[: self.limits.max_text_length - len(ELLIPSIS)] + ELLIPSIS
            setattr(parent, field, cut)

    def number(self, where: str, value: float) -> None:
        if not math.isfinite(value) or value < 0 or value > MAX_SECONDS:
            raise Rejected(
                "invalid_number", f"{where} = {value!r}: not a duration between 0 and 1 year"
            )

    def message(self, message: Message, where: str) -> None:
        for field, value in message.ListFields():
            path = f"{where}.{field.name}" if where else field.name
            if field.is_repeated:
                self.repeated(message, field, value, path)
            else:
                self.single(message, field, value, path)

    def repeated(
        self, parent: Message, field: FieldDescriptor, values: list[object], path: str
    ) -> None:
        bound = COUNTED.get(field.full_name)
        if bound is not None:
            reason, key = bound
            limit: int = getattr(self.limits, key)
            if len(values) > limit:
                raise Rejected(reason, f"{len(values)} {field.name}, limit {limit}")
        elif len(values) > self.limits.max_list_length:
            raise Rejected(
                "too_many_items",
                f"{path} has {len(values)} items, limit {self.limits.max_list_length}",
            )
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for i, item in enumerate(values):
                assert isinstance(item, Message)
                if _is_timestamp(field):
                    self.timestamp(f"{path}[{i}]", field.full_name, item)
                else:
                    self.message(item, f"{path}[{i}]")
        elif field.type == FieldDescriptor.TYPE_STRING:
            container = getattr(parent, field.name)
            for i, item in enumerate(values):
                text = str(item)
                if field.full_name in LABEL_FIELDS and len(text) > self.limits.max_label_length:
                    raise Rejected("label_too_long", f"{path}[{i}] is too long")
                if len(text) > self.limits.max_text_length:
                    container[i] = text[: self.limits.max_text_length - 1] + ELLIPSIS
        elif field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            for i, item in enumerate(values):
                self.number(f"{path}[{i}]", float(item))  # type: ignore[arg-type]

    def single(self, parent: Message, field: FieldDescriptor, value: object, path: str) -> None:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            assert isinstance(value, Message)
            if _is_timestamp(field):
                self.timestamp(path, field.full_name, value)
            else:
                self.message(value, path)
        elif field.type == FieldDescriptor.TYPE_STRING:
            assert isinstance(value, str)
            self.string(path, field.full_name, value, parent, field.name)
        elif field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            assert isinstance(value, float)
            self.number(path, value)


def validate(report: pb.NodeReport, limits: LimitsConfig, now: float) -> None:
    """Raises Rejected for a report that must not be stored; may shorten free text in place.

    Order matters only for which reason a report with several faults is counted under:
    identity first, then the configured counts, then every field.
    """
    name = report.node_name
    if not name.strip():
        raise Rejected("node_name_empty", "node_name is empty")
    if len(name) > limits.max_node_name_length:
        raise Rejected(
            "node_name_too_long",
            f"node_name has {len(name)} characters, limit {limits.max_node_name_length}",
        )
    if len(report.egress) > limits.max_targets:
        raise Rejected(
            "too_many_targets", f"{len(report.egress)} egress results, limit {limits.max_targets}"
        )
    if len(report.mounts) > limits.max_mounts:
        raise Rejected("too_many_mounts", f"{len(report.mounts)} mounts, limit {limits.max_mounts}")
    if len(report.instance_id) > limits.max_label_length:
        raise Rejected("label_too_long", "instance_id is too long")
    _Walker(limits, now).message(report, "")
    _check_names(report)
