"""Validation at the border: every field of an incoming NodeReport, checked once, before storage.

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

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from collector.config import LimitsConfig
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
# Repeated fields whose items' key the walk collects for _check_names, by where they are
# kept in _Checks: (the repeated field, the key field of its items).
KEYS = {"preflight.v1.EgressResult.phases": ("phases", "phase")}
# Sub-messages remembered once they passed (see _Checks.valid): a node's GPU facts are
# the same in every report it sends, and checking them (with their names) cost ~19 us of
# an 8-GPU report, ~4 us to recognise. Only a sub-message without numbers or timestamps
# below it is remembered: whether it passes then depends on its bytes and the limits
# alone, not on the clock.
REMEMBERED = frozenset({"preflight.v1.NodeReport.gpus"})
# Repeated fields with their own configured bound (checked first, with their reason).
COUNTED = {
    "preflight.v1.NodeReport.egress": ("too_many_targets", "max_targets"),
    "preflight.v1.NodeReport.mounts": ("too_many_mounts", "max_mounts"),
}
ELLIPSIS = "…"


class Rejected(Exception):
    """An invalid report; `reason` is one of collector.state.REJECTION_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _is_timestamp(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.full_name == TIMESTAMP


def _unique(where: str, values: Iterable[object]) -> None:
    seen: set[object] = set()
    for value in values:
        if value in seen:
            raise Rejected("duplicate_name", f"{where} {value!r} appears more than once")
        seen.add(value)


def _distinct(where: str, values: list[Any]) -> None:
    # The common case in one C-level set build; the loop only to name the duplicate.
    if len(set(values)) != len(values):
        _unique(where, values)


# Known phase numbers have distinct names; only unknown ones share one ("unknown").
_KNOWN_PHASES = frozenset(pb.Phase.values())


def _check_names(
    report: pb.NodeReport, phases: list[tuple[Any, list[int]]], gpus_known: bool
) -> None:
    """Names that key a series or a table row must be unique within one report.

    `phases`: each egress result with its phase numbers, in report order, as the walk
    collected them (KEYS): iterating the phases again cost ~12 us of an 8-GPU report,
    most of it protobuf making an object per item. `gpus_known`: the report's GPU facts
    passed before, these names with them (REMEMBERED).
    """
    _distinct("egress target", [e.target for e in report.egress])
    _distinct("mount path", [m.path for m in report.mounts])
    for e, numbers in phases:
        distinct = set(numbers)
        if len(distinct) != len(numbers) or not distinct <= _KNOWN_PHASES:
            # By name: two unknown phase numbers would both be labelled "unknown".
            _unique(f"phase of target {e.target!r}", (PHASES.name(p) for p in numbers))
    if gpus_known:
        return
    gpus = report.gpus
    _distinct("GPU index", [d.index for d in gpus.devices])
    _distinct("GPU uuid", [d.uuid for d in gpus.devices if d.uuid])
    _distinct("PCI address", [d.address for d in gpus.pci_devices if d.address])


# What a field needs checked, decided once per field (see _Compiler).
_OTHER, _MESSAGE, _TIMESTAMP, _CERT_TIME, _TEXT, _LABEL, _NUMBER = range(7)


def _message_type(field: FieldDescriptor) -> Descriptor:
    message = field.message_type
    assert message is not None, field.full_name
    return message


def _kind(field: FieldDescriptor) -> int:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if _is_timestamp(field):
            return _CERT_TIME if field.full_name in CERTIFICATE_TIMES else _TIMESTAMP
        return _MESSAGE
    if field.type == FieldDescriptor.TYPE_STRING:
        return _LABEL if field.full_name in LABEL_FIELDS else _TEXT
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return _NUMBER
    return _OTHER


# Where a value sits, built only when a report is refused: (parent, field name, index).
_Where = tuple[Any, str, int] | None


def _path(where: _Where) -> str:
    parts: list[str] = []
    while where is not None:
        parent, name, index = where
        parts.append(f"{name}[{index}]" if index >= 0 else name)
        where = parent
    return ".".join(reversed(parts))


# Limits (label, text, list) -> 16-byte BLAKE2b digests of remembered sub-messages'
# bytes: a digest, not the bytes (~1.5 KB of GPU facts per node), and a cryptographic
# one, so that no report can be made to pass as another. Bounded: see _remember.
_VALID: dict[tuple[int, int, int], set[bytes]] = {}


class _Checks:
    """One validation's limits and clock, and the refusals the compiled checks raise.

    The refusals are methods so that the compiled code stays a straight line of
    comparisons; they build the path and the message only for a refused report.
    """

    __slots__ = (
        "floor",
        "fresh",
        "known",
        "lean_floor",
        "limits",
        "max_label",
        "max_list",
        "max_offset",
        "max_text",
        "now",
        "phases",
        "shortened",
        "valid",
    )

    def __init__(self, limits: LimitsConfig, now: float) -> None:
        self.limits = limits
        self.now = now
        # Set by the compiled checks when they cut a text (the report changed).
        self.shortened = False
        # Collected by the walk for _check_names (KEYS): (egress result, phase numbers).
        self.phases: list[tuple[Any, list[int]]] = []
        self.max_label = limits.max_label_length
        self.max_text = limits.max_text_length
        self.max_list = limits.max_list_length
        self.max_offset = limits.max_timestamp_offset
        # REMEMBERED: digests of the sub-messages that passed under these limits, shared
        # by every validation (one set operation at a time: atomic under the GIL); this
        # report's sub-message was among them (known) or is remembered if it passes (fresh).
        key = (self.max_label, self.max_text, self.max_list)
        valid = _VALID.get(key)
        self.valid = valid if valid is not None else _VALID.setdefault(key, set())
        self.known = False
        self.fresh: bytes | None = None
        # A message serialized in at most lean_floor bytes cannot hold free text or a
        # list over its cap (a character takes at least one byte, a list item too); in
        # at most `floor` bytes, no label over its cap either.
        self.lean_floor = min(self.max_text, self.max_list)
        self.floor = min(self.lean_floor, self.max_label)

    def timestamp(self, where: _Where, value: Any, certificate: bool) -> None:
        """The slow path of a timestamp the compiled check found suspect: refuses or returns."""
        seconds: int = value.seconds
        nanos: int = value.nanos
        if not (TIMESTAMP_MIN_SECONDS <= seconds <= TIMESTAMP_MAX_SECONDS) or not (
            0 <= nanos <= 999_999_999
        ):
            raise Rejected(
                "invalid_timestamp", f"{_path(where)} outside protobuf's Timestamp range"
            )
        if certificate:
            return
        offset = abs(seconds + nanos / 1e9 - self.now)
        if offset > self.max_offset:
            raise Rejected(
                "invalid_timestamp",
                f"{_path(where)} is {offset:.0f}s from the collector's clock, "
                f"limit {self.max_offset:.0f}s",
            )

    def number(self, where: _Where, value: float) -> None:
        raise Rejected(
            "invalid_number", f"{_path(where)} = {value!r}: not a duration between 0 and 1 year"
        )

    def label(self, where: _Where, length: int) -> None:
        if where is not None and where[2] >= 0:
            raise Rejected("label_too_long", f"{_path(where)} is too long")
        raise Rejected(
            "label_too_long", f"{_path(where)} has {length} characters, limit {self.max_label}"
        )

    def items(self, where: _Where, count: int) -> None:
        raise Rejected("too_many_items", f"{_path(where)} has {count} items, limit {self.max_list}")

    def counted(self, reason: str, key: str, name: str, count: int) -> int:
        limit: int = getattr(self.limits, key)
        if count > limit:
            raise Rejected(reason, f"{count} {name}, limit {limit}")
        return limit


# The variants of a message's check: FULL checks everything; LEAN leaves out what a
# message of at most `lean_floor` bytes cannot break (free text over max_text_length,
# lists over max_list_length); TINY, for at most `floor` bytes, labels too.
FULL, LEAN, TINY = range(3)


def _timestamp_check(where: str, certificate: bool) -> list[str]:
    within = "" if certificate else " and abs(v.seconds + v.nanos / 1e9 - c.now) <= c.max_offset"
    return [
        f"if not (MIN <= v.seconds <= MAX and 0 <= v.nanos <= 999_999_999{within}):",
        f"    c.timestamp({where}, v, {certificate})",
    ]


class _Compiler:
    """Turns each message type's descriptor into one Python function of plain checks.

    Reading every value through ListFields and the descriptors cost ~300 us per
    report of a real 8-GPU node (a third of a core at 1,000 reports/s); the compiled
    checks read only what can be refused, with the same rules and the same reasons
    (tests/support/validation_reference.py keeps the descriptor walk; a property test
    compares the two on arbitrary reports). Still driven by the descriptors: a field
    added to report.proto is checked by the rule of its type without touching this.
    """

    def __init__(self) -> None:
        self.names: dict[tuple[str, int], str] = {}
        self.sources: list[str] = []
        self.size_only: dict[str, bool] = {}
        self.namespace: dict[str, Any] = {
            "MIN": TIMESTAMP_MIN_SECONDS,
            "MAX": TIMESTAMP_MAX_SECONDS,
            "MAX_SECONDS": MAX_SECONDS,
            "ELLIPSIS": ELLIPSIS,
            "DIGEST": hashlib.blake2b,
        }

    def _is_size_only(self, message: Descriptor, seen: frozenset[str] = frozenset()) -> bool:
        """True when nothing below `message` is a number or a timestamp: then only its
        strings and lists can be refused, and only when it is bigger than the floor."""
        known = self.size_only.get(message.full_name)
        if known is not None:
            return known
        result = True
        for field in message.fields:
            kind = _kind(field)
            if kind in (_NUMBER, _TIMESTAMP, _CERT_TIME):
                result = False
            elif kind == _MESSAGE and _message_type(field).full_name not in seen:
                result = self._is_size_only(_message_type(field), seen | {message.full_name})
            if not result:
                break
        if not seen:
            self.size_only[message.full_name] = result
        return result

    def function(self, message: Descriptor, variant: int) -> str:
        """The name of `message`'s check in `variant` (FULL, LEAN or TINY), compiled once."""
        key = (message.full_name, variant)
        name = self.names.get(key)
        if name is not None:
            return name
        name = self.names[key] = f"check_{len(self.names)}"
        lines = [f"def {name}(m, where, c):  # {message.full_name}, variant {variant}"]
        # In field-number order, as ListFields walks: a report with several faults is
        # refused for the same one as before.
        for field in sorted(message.fields, key=lambda f: f.number):
            lines += ["    " + line for line in self._field(field, variant)]
        lines.append("    return None")
        self.sources.append("\n".join(lines))
        return name

    def _child(self, field: FieldDescriptor, value: str, where: str, variant: int) -> list[str]:
        """Checks a sub-message with the cheapest variant its serialized size allows."""
        child = _message_type(field)
        if all(not f.is_repeated and _kind(f) in (_NUMBER, _OTHER) for f in child.fields):
            # Only numbers to check (a phase's duration): inline, no call per item (~5 us
            # of the 35 phases of an 8-GPU report), the same check in every variant.
            numbers = [f.name for f in child.fields if _kind(f) == _NUMBER]
            lines = []
            for name in sorted(numbers, key=lambda n: child.fields_by_name[n].number):
                lines += [
                    f"n = {value}.{name}",
                    "if not 0.0 <= n <= MAX_SECONDS:",
                    f"    c.number(({where}, {name!r}, -1), n)",
                ]
            return lines or ["pass"]
        size_only = self._is_size_only(child)
        if variant == FULL:
            full, lean = self.function(child, FULL), self.function(child, LEAN)
            lines = [
                f"s = {value}.ByteSize()",
                "if s > c.lean_floor:",
                f"    {full}({value}, {where}, c)",
                "elif s > c.floor:",
                f"    {lean}({value}, {where}, c)",
            ]
            if not size_only:
                lines += ["else:", f"    {self.function(child, TINY)}({value}, {where}, c)"]
            return lines
        if size_only:
            if variant == TINY:
                return ["pass"]
            lean = self.function(child, LEAN)
            return [f"if {value}.ByteSize() > c.floor:", f"    {lean}({value}, {where}, c)"]
        return [f"{self.function(child, variant)}({value}, {where}, c)"]

    def _field(self, field: FieldDescriptor, variant: int) -> list[str]:
        kind, name = _kind(field), field.name
        here = f"(where, {name!r}, -1)"
        if field.is_repeated:
            if (
                field.type == FieldDescriptor.TYPE_MESSAGE
                and _message_type(field).GetOptions().map_entry
            ):
                raise TypeError(f"{field.full_name}: a map field needs a validation rule")
            return self._repeated(field, kind, name, variant)
        if kind == _MESSAGE:
            if field.full_name in REMEMBERED and self._is_size_only(_message_type(field)):
                child = self._child(field, "v", here, variant)
                return [
                    f"if m.HasField({name!r}):",
                    f"    v = m.{name}",
                    "    d = DIGEST(v.SerializeToString(), digest_size=16).digest()",
                    "    if d in c.valid:",
                    "        c.known = True",
                    "    else:",
                    "        c.fresh = d",
                    *("        " + x for x in child),
                ]
            child = self._child(field, f"m.{name}", here, variant)
            return [f"if m.HasField({name!r}):", *("    " + x for x in child)]
        if kind in (_TIMESTAMP, _CERT_TIME):
            return [
                f"if m.HasField({name!r}):",
                f"    v = m.{name}",
                *("    " + x for x in _timestamp_check(here, kind == _CERT_TIME)),
            ]
        if kind == _TEXT and variant == FULL:
            return [
                f"v = m.{name}",
                "if len(v) > c.max_text:",
                f"    m.{name} = v[: c.max_text - len(ELLIPSIS)] + ELLIPSIS",
                "    c.shortened = True",
            ]
        if kind == _LABEL and variant != TINY:
            return [f"v = m.{name}", "if len(v) > c.max_label:", f"    c.label({here}, len(v))"]
        if kind == _NUMBER:
            # One chained comparison: NaN compares false, so NaN and +-inf are refused too.
            return [f"v = m.{name}", "if not 0.0 <= v <= MAX_SECONDS:", f"    c.number({here}, v)"]
        return []

    def _repeated(self, field: FieldDescriptor, kind: int, name: str, variant: int) -> list[str]:
        item = f"(where, {name!r}, i)"
        lines = [f"vs = m.{name}"]
        counted = COUNTED.get(field.full_name)
        if counted is not None:
            reason, key = counted
            lines += [f"c.counted({reason!r}, {key!r}, {name!r}, len(vs))"]
        elif variant == FULL:
            lines += ["if len(vs) > c.max_list:", f"    c.items((where, {name!r}, -1), len(vs))"]
        if kind == _MESSAGE:
            child = self._child(field, "v", item, variant)
            keyed = KEYS.get(field.full_name)
            if keyed is not None:
                # Every variant collects the keys: _check_names reads them from here.
                where_kept, key = keyed
                lines += [
                    "keys = []",
                    "for i, v in enumerate(vs):",
                    f"    keys.append(v.{key})",
                    *("    " + x for x in child if child != ["pass"]),
                    f"c.{where_kept}.append((m, keys))",
                ]
            elif child != ["pass"]:
                lines += ["for i, v in enumerate(vs):", *("    " + x for x in child)]
        elif kind in (_TIMESTAMP, _CERT_TIME):
            check = _timestamp_check(item, kind == _CERT_TIME)
            lines += ["for i, v in enumerate(vs):", *("    " + x for x in check)]
        elif (kind == _TEXT and variant == FULL) or (kind == _LABEL and variant != TINY):
            lines += ["for i, v in enumerate(vs):"]
            if kind == _LABEL:
                lines += ["    if len(v) > c.max_label:", f"        c.label({item}, len(v))"]
            if variant == FULL:
                lines += [
                    "    if len(v) > c.max_text:",
                    "        vs[i] = v[: c.max_text - len(ELLIPSIS)] + ELLIPSIS",
                    "        c.shortened = True",
                ]
        elif kind == _NUMBER:
            lines += [
                "for i, v in enumerate(vs):",
                "    if not 0.0 <= v <= MAX_SECONDS:",
                f"        c.number({item}, v)",
            ]
        return lines

    def build(self, message: Descriptor) -> Callable[[Message, _Where, _Checks], None]:
        name = self.function(message, FULL)
        code = compile("\n\n".join(self.sources), f"<validation of {message.full_name}>", "exec")
        exec(code, self.namespace)
        check: Callable[[Message, _Where, _Checks], None] = self.namespace[name]
        return check


_check_report = _Compiler().build(pb.NodeReport.DESCRIPTOR)


def validate(report: pb.NodeReport, limits: LimitsConfig, now: float) -> bool:
    """Raises Rejected for a report that must not be stored; may shorten free text in place
    (then returns True: the report's bytes no longer encode it).

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
    checks = _Checks(limits, now)
    _check_report(report, None, checks)
    _check_names(report, checks.phases, checks.known)
    if checks.fresh is not None and not checks.shortened:
        _remember(checks.valid, checks.fresh, limits)
    return checks.shortened


def _remember(valid: set[bytes], digest: bytes, limits: LimitsConfig) -> None:
    """Adds a passed sub-message's digest; forgets them all past two per node allowed
    (nodes whose GPUs changed leave theirs behind): they are checked once more, no more."""
    if len(valid) >= 2 * limits.max_nodes:
        valid.clear()
    valid.add(digest)
