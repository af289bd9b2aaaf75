"""Soft state: the latest accepted report per node, validation, and staleness.

Nothing here survives a restart on purpose: agents push whole snapshots at least
every heartbeat, so a restarted collector is complete again within one heartbeat.
Readers never see the mutable dict: `snapshot()` hands out an immutable view.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.config import LimitsConfig
from preflight.v1 import report_pb2 as pb

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
)


class Rejected(Exception):
    """An invalid report; `reason` is one of REJECTION_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class NodeEntry:
    """One node's latest report and when the collector received it."""

    name: str
    report: pb.NodeReport
    received_at: float
    # Agent clock minus collector clock at receipt (positive: agent ahead).
    clock_skew_seconds: float
    first_seen: float
    # Target → start of the last probe that reached it; kept while the target is down.
    last_success: tuple[tuple[str, float], ...] = ()
    up: bool = True


@dataclass(frozen=True)
class StateSnapshot:
    """An immutable view of every known node at one instant."""

    taken_at: float
    nodes: tuple[NodeEntry, ...]
    stale_after_seconds: float
    heartbeat_interval: float
    reports_received: int
    rejected: tuple[tuple[str, int], ...]
    version: int

    def node(self, name: str) -> NodeEntry | None:
        return next((n for n in self.nodes if n.name == name), None)


def validate(report: pb.NodeReport, limits: LimitsConfig) -> None:
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


class ClusterState:
    """Latest report per node. Mutated only from the event loop."""

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
        self._rejected = dict.fromkeys(REJECTION_REASONS, 0)
        self._received = 0
        self.version = 0

    def count_rejection(self, reason: str) -> None:
        self._rejected[reason] += 1

    def accept(self, report: pb.NodeReport, now: float) -> None:
        """Stores `report` as the node's latest, or raises Rejected (the caller counts it)."""
        validate(report, self.limits)
        previous = self._nodes.get(report.node_name)
        # The sequence rule (docs/security.md): a report of another instance supersedes;
        # within one instance a lower sequence is a late retry and refused, but only while
        # the higher one is fresh (received within a heartbeat). A sequence pushed to
        # 2^64-1 once (by anyone who could report for the node) or an agent restored
        # from a snapshot therefore cannot shut the node's agent out for longer.
        if (
            previous is not None
            and previous.report.instance_id == report.instance_id
            and report.sequence < previous.report.sequence
            and now - previous.received_at < self.heartbeat_interval
        ):
            raise Rejected(
                "sequence_regressed",
                f"sequence {report.sequence} after {previous.report.sequence} "
                f"for instance {report.instance_id}",
            )
        self._received += 1
        sent_at = report.sent_at.ToNanoseconds() / 1e9 if report.HasField("sent_at") else now
        # Only targets the node still probes: a target its new plan dropped takes its
        # series along (kept while a probed target is down, though).
        probed = {e.target for e in report.egress}
        last_success = {t: at for t, at in previous.last_success if t in probed} if previous else {}
        for e in report.egress:
            if e.outcome == pb.OUTCOME_UP:
                last_success[e.target] = e.started_at.ToNanoseconds() / 1e9 or now
        self._nodes[report.node_name] = NodeEntry(
            name=report.node_name,
            report=report,
            received_at=now,
            clock_skew_seconds=sent_at - now,
            first_seen=previous.first_seen if previous else now,
            last_success=tuple(sorted(last_success.items())),
        )
        self.version += 1

    def snapshot(self, now: float) -> StateSnapshot:
        for name in [n for n, e in self._nodes.items() if now - e.received_at > self.forget_after]:
            del self._nodes[name]
            self.version += 1
        # Built field by field: dataclasses.replace is ~1.5x slower, and this runs per scrape.
        nodes = tuple(
            NodeEntry(
                name=e.name,
                report=e.report,
                received_at=e.received_at,
                clock_skew_seconds=e.clock_skew_seconds,
                first_seen=e.first_seen,
                last_success=e.last_success,
                up=now - e.received_at <= self.stale_after_seconds,
            )
            for e in sorted(self._nodes.values(), key=lambda e: e.name)
        )
        return StateSnapshot(
            taken_at=now,
            nodes=nodes,
            stale_after_seconds=self.stale_after_seconds,
            heartbeat_interval=self.heartbeat_interval,
            reports_received=self._received,
            rejected=tuple(self._rejected.items()),
            version=self.version,
        )
