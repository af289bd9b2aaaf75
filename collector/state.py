"""Soft state: the latest accepted report per node, validation, and staleness.

Nothing here survives a restart on purpose: agents push whole snapshots at least
every heartbeat, so a restarted collector is complete again within one heartbeat.
Readers never see the mutable dict: `snapshot()` hands out an immutable view.

A node's report is held as the bytes it arrived in (`NodeEntry.raw`), not decoded: a
decoded 8-GPU report costs ~10 KiB of the process's memory, its bytes ~3 KiB, and
decoding one takes a few microseconds. `NodeEntry.report` decodes on access; what is
read of every node on every judging is derived once per report (collector.rules.memo)
or extracted by `accept` into the entry (instance id and sequence).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import cached_property
from sys import intern
from typing import Concatenate, ParamSpec, TypeVar

from collector.config import LimitsConfig
from collector.validation import Rejected, validate
from preflight.v1 import report_pb2 as pb

__all__ = [
    "REJECTION_REASONS",
    "AgentReports",
    "ClusterState",
    "NodeEntry",
    "Rejected",
    "decode_report",
]

# The one closed set of reasons a report is refused for (the `reason` label).
REJECTION_REASONS = (
    "malformed",
    "message_too_large",
    "node_name_empty",
    "node_name_too_long",
    "sequence_regressed",
    "too_many_targets",
    "too_many_mounts",
    # Refused before the report is read (collector/auth.py, collector/ratelimit.py).
    "unauthenticated",
    "identity_mismatch",
    "rate_limited",
    # collector.validation: one field of the report is unusable.
    "invalid_timestamp",
    "invalid_number",
    "duplicate_name",
    "label_too_long",
    "too_many_items",
    # Bounded state (DESIGN.md §8).
    "too_many_nodes",
    "state_full",
    "unknown_node",
)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(
    method: Callable[Concatenate[ClusterState, _P], _R],
) -> Callable[Concatenate[ClusterState, _P], _R]:
    """Runs a ClusterState method under the state's lock (gRPC handler threads call in)."""

    def locked(self: ClusterState, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            return method(self, *args, **kwargs)

    functools.update_wrapper(locked, method)  # its name and docstring
    return locked


class _Decoder:
    """Decodes stored report bytes, remembering the last report decoded in each thread.

    One node's outputs read its report several times in a row (each concern of its
    /metrics text, each field of its JSON): they decode once. One entry per thread, so
    no lock and no growth; `decoded` counts the decodes (tests read it).
    """

    def __init__(self) -> None:
        self._last = threading.local()
        self.decoded = 0

    def __call__(self, raw: bytes) -> pb.NodeReport:
        last: tuple[bytes, pb.NodeReport] | None = getattr(self._last, "report", None)
        if last is not None and last[0] is raw:
            return last[1]
        report = pb.NodeReport.FromString(raw)
        self._last.report = (raw, report)
        self.decoded += 1
        return report


decode_report = _Decoder()


# slots: one entry per node, and a per-instance dict would cost more than its fields.
@dataclass(frozen=True, slots=True)
class NodeEntry:
    """One node's latest report (as the bytes accepted) and when the collector received it."""

    name: str
    # The accepted report, serialized: a new bytes object for every accepted report
    # (the /metrics cache compares it by identity, collector.rules.memo by value).
    raw: bytes
    received_at: float
    # Agent clock minus collector clock at receipt (positive: agent ahead).
    clock_skew_seconds: float
    first_seen: float
    # Target → start of the last probe that reached it; kept while the target is down.
    last_success: tuple[tuple[str, float], ...] = ()
    up: bool = True
    # Of the report, for the sequence rule (accept reads them for every report).
    instance_id: str = ""
    sequence: int = 0

    def __reduce__(self) -> tuple[type[NodeEntry], tuple[object, ...]]:
        # Pickled by position (entries go to the collector's helper processes in batches):
        # the slots dataclass default reads dataclasses.fields() per entry, 4x slower.
        return NodeEntry, (
            self.name,
            self.raw,
            self.received_at,
            self.clock_skew_seconds,
            self.first_seen,
            self.last_success,
            self.up,
            self.instance_id,
            self.sequence,
        )

    @property
    def report(self) -> pb.NodeReport:
        """The report, decoded from `raw` (a few microseconds): read it, never change it.

        Whatever reads every node's report on every judging goes through a
        collector.rules.memo cache instead.
        """
        return decode_report(self.raw)

    @classmethod
    def of(
        cls,
        report: pb.NodeReport,
        *,
        received_at: float,
        clock_skew_seconds: float,
        first_seen: float,
        last_success: tuple[tuple[str, float], ...] = (),
        up: bool = True,
    ) -> NodeEntry:
        """An entry holding `report` (tests and benches; the state builds its own)."""
        return cls(
            name=report.node_name,
            raw=report.SerializeToString(),
            received_at=received_at,
            clock_skew_seconds=clock_skew_seconds,
            first_seen=first_seen,
            last_success=last_success,
            up=up,
            instance_id=report.instance_id,
            sequence=report.sequence,
        )


@dataclass(frozen=True)
class AgentReports:
    """An immutable view of every known node at one instant."""

    taken_at: float
    nodes: tuple[NodeEntry, ...]
    stale_after_seconds: float
    heartbeat_interval: float
    reports_received: int
    rejected: tuple[tuple[str, int], ...]
    version: int

    def node(self, name: str) -> NodeEntry | None:
        return self.by_name.get(name)

    @cached_property
    def by_name(self) -> dict[str, NodeEntry]:
        # Built once per snapshot: rules look nodes up by name, and a scan per lookup
        # made agent_coverage quadratic in stale nodes.
        return {n.name: n for n in self.nodes}


class ClusterState:
    """Latest report per node. Mutated from the gRPC handler threads (collector/ingest.py)
    and the event loop: every method that reads or writes the dict holds `_lock`."""

    def __init__(
        self,
        limits: LimitsConfig,
        heartbeat_interval: float,
        stale_after_heartbeats: int,
        forget_after: float,
    ) -> None:
        self.limits = limits
        self.heartbeat_interval = heartbeat_interval
        self.stale_after_seconds = heartbeat_interval * stale_after_heartbeats
        self.forget_after = max(forget_after, self.stale_after_seconds)
        self._nodes: dict[str, NodeEntry] = {}
        # Bytes of every stored report (len(entry.raw)): memory is bounded by bytes, not
        # just nodes.
        self._bytes = 0
        self._rejected = dict.fromkeys(REJECTION_REASONS, 0)
        self._received = 0
        self.version = 0
        # Node names in order, kept until a node comes or goes: sorting 10,000 names
        # on every snapshot (each scrape, each judging) was a third of its cost.
        self._order: list[str] | None = None
        # Re-entrant: snapshot() forgets silent nodes through forget().
        self._lock = threading.RLock()

    @_locked
    def count_rejection(self, reason: str) -> None:
        # A reason outside the closed set is a bug; still counted rather than crashing ingest.
        self._rejected[reason] = self._rejected.get(reason, 0) + 1

    def accept(
        self,
        report: pb.NodeReport,
        now: float,
        known_nodes: Collection[str] | None = None,
        size: int | None = None,
        raw: bytes | None = None,
    ) -> None:
        """Stores `report` as the node's latest, or raises Rejected (the caller counts it).

        `known_nodes`: the Kubernetes view's node names when the API is readable; a
        report for any other name is refused until the view knows it. `raw`: the bytes
        `report` was decoded from (ingest has them; kept as they are unless validation
        shortened a text, else the report is encoded again). `size` (the length it
        arrived in) is not needed any more: the bound counts the bytes kept.

        What depends on the report alone (validation, ~90 us of an 8-GPU report, and
        what the entry takes from it) is done before taking the lock: handler threads do
        it side by side instead of queueing for the lock behind one another's. The
        reasons keep their order (validation, then unknown_node, then the state's own).
        """
        if validate(report, self.limits, now):
            raw = None  # free text was cut: the bytes no longer say what is stored
        name = report.node_name
        if known_nodes is not None and name not in known_nodes:
            raise Rejected("unknown_node", f"{name!r} is not a Kubernetes node")
        if raw is None:
            raw = report.SerializeToString()
        # Validated timestamps are in range: protobuf's ToNanoseconds() would check that
        # again in Python; the same arithmetic, so the same floats.
        sent = report.sent_at
        sent_at = (
            (sent.seconds * 1_000_000_000 + sent.nanos) / 1e9 if report.HasField("sent_at") else now
        )
        probed: list[str] = []
        reached: list[tuple[str, float]] = []
        for e in report.egress:
            target = e.target
            probed.append(target)
            if e.outcome == pb.OUTCOME_UP:
                started = e.started_at
                # Interned: every node names the same targets, and each read of a field
                # of a message makes a new str; kept once, not once per node.
                reached.append(
                    (intern(target), (started.seconds * 1_000_000_000 + started.nanos) / 1e9 or now)
                )
        with self._lock:
            self._admit(
                name, raw, now, report.instance_id, report.sequence, sent_at, probed, reached
            )

    def _admit(
        self,
        name: str,
        raw: bytes,
        now: float,
        instance_id: str,
        sequence: int,
        sent_at: float,
        probed: list[str],
        reached: list[tuple[str, float]],
    ) -> None:
        """accept's part under the lock: the bounds, the sequence rule, the entry."""
        previous = self._nodes.get(name)
        if previous is None and len(self._nodes) >= self.limits.max_nodes:
            raise Rejected(
                "too_many_nodes", f"already {len(self._nodes)} nodes, limit {self.limits.max_nodes}"
            )
        held = self._bytes - (len(previous.raw) if previous is not None else 0)
        if held + len(raw) > self.limits.max_state_bytes:
            limit = self.limits.max_state_bytes
            raise Rejected(
                "state_full", f"{len(raw)} more bytes over the {limit} held for all reports"
            )
        # The sequence rule (docs/security.md): a report of another instance supersedes;
        # within one instance a lower sequence is a late retry and refused, but only while
        # the higher one is fresh (received within a heartbeat). A sequence pushed to
        # 2^64-1 once (by anyone who could report for the node) or an agent restored
        # from a snapshot therefore cannot shut the node's agent out for longer.
        if (
            previous is not None
            and previous.instance_id == instance_id
            and sequence < previous.sequence
            and now - previous.received_at < self.heartbeat_interval
        ):
            raise Rejected(
                "sequence_regressed",
                f"sequence {sequence} after {previous.sequence} for instance {instance_id}",
            )
        self._received += 1
        # Only targets the node still probes: a target its new plan dropped takes its
        # series along (kept while a probed target is down, though).
        last_success = {t: at for t, at in previous.last_success if t in probed} if previous else {}
        last_success.update(reached)
        self._bytes = held + len(raw)
        if previous is None:
            self._order = None
        self._nodes[name] = NodeEntry(
            name=name,
            raw=raw,
            received_at=now,
            clock_skew_seconds=sent_at - now,
            first_seen=previous.first_seen if previous else now,
            last_success=tuple(sorted(last_success.items())),
            instance_id=instance_id,
            sequence=sequence,
        )
        self.version += 1

    @_locked
    def forget(self, name: str) -> None:
        """Drops a node and what it held (a node silent past forget_after)."""
        entry = self._nodes.pop(name, None)
        if entry is not None:
            self._order = None
            self._bytes -= len(entry.raw)
            self.version += 1

    @_locked
    def summary(self, now: float) -> AgentReports:
        """The counts of a snapshot without its nodes, for outputs that show no node (the
        verdicts API): a full snapshot of 10,000 nodes holds the lock a few milliseconds,
        and a dashboard polling verdicts took a tenth of the GIL with them."""
        return self._reports(now, ())

    @_locked
    def snapshot(self, now: float) -> AgentReports:
        forget_after = self.forget_after
        for name in [n for n, e in self._nodes.items() if now - e.received_at > forget_after]:
            self.forget(name)
        if self._order is None:
            self._order = sorted(self._nodes)
        # Stored entries say up=True and are immutable: a fresh node's entry is handed out
        # as it is (no copy per node per snapshot); only a late node gets a copy with
        # up=False, built field by field (dataclasses.replace is ~1.5x slower).
        stale_after = self.stale_after_seconds
        nodes = tuple(
            e
            if now - e.received_at <= stale_after
            else NodeEntry(
                name=e.name,
                raw=e.raw,
                received_at=e.received_at,
                clock_skew_seconds=e.clock_skew_seconds,
                first_seen=e.first_seen,
                last_success=e.last_success,
                up=False,
                instance_id=e.instance_id,
                sequence=e.sequence,
            )
            for e in map(self._nodes.__getitem__, self._order)
        )
        return self._reports(now, nodes)

    def _reports(self, now: float, nodes: tuple[NodeEntry, ...]) -> AgentReports:
        """`nodes` with the state's counts as of now (the caller holds the lock)."""
        return AgentReports(
            taken_at=now,
            nodes=nodes,
            stale_after_seconds=self.stale_after_seconds,
            heartbeat_interval=self.heartbeat_interval,
            reports_received=self._received,
            rejected=tuple(self._rejected.items()),
            version=self.version,
        )
