"""One probe cycle's findings, when they must be pushed, and the NodeReport they become.

Iterates the probe-kind registry (agent.kinds): no kind is named here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.kinds import KINDS
from agent.plan import Effective
from preflight.v1 import report_pb2 as pb


@dataclass
class ProbeFailure:
    """A probe that produced no section at all: it raised or missed its deadline."""

    probe: str
    message: str
    timed_out: bool
    duration_seconds: float


@dataclass
class Snapshot:
    """Everything one probe cycle found, before it becomes a NodeReport."""

    # Kind name → that kind's result; a kind that failed is absent (see `failures`).
    results: dict[str, Any] = field(default_factory=dict)
    failures: list[ProbeFailure] = field(default_factory=list)
    # The probe plan the cycle ran under (None: probes without a plan, tests).
    plan: Effective | None = None

    def outcome_signature(self) -> tuple[object, ...]:
        """What must be pushed at once when it changes (not timings or free space)."""
        return (
            # A new plan is pushed at once, so the collector sees it adopted.
            None if self.plan is None else self.plan.version,
            tuple(
                (kind.name, kind.signature(self.results[kind.name]))
                for kind in KINDS
                if kind.name in self.results
            ),
            tuple(sorted((f.probe, f.timed_out) for f in self.failures)),
        )


def build_report(
    snapshot: Snapshot,
    *,
    node_name: str,
    agent_version: str,
    instance_id: str,
    sequence: int,
    probe_interval: float,
    heartbeat_interval: float,
) -> pb.NodeReport:
    report = pb.NodeReport(
        node_name=node_name,
        agent_version=agent_version,
        instance_id=instance_id,
        sequence=sequence,
        probe_interval_seconds=probe_interval,
        heartbeat_interval_seconds=heartbeat_interval,
        probe_errors=[
            pb.ProbeError(
                probe=f.probe,
                message=f.message,
                timed_out=f.timed_out,
                duration_seconds=f.duration_seconds,
            )
            for f in snapshot.failures
        ],
    )
    if snapshot.plan is not None:
        report.plan_version = snapshot.plan.version
        report.plan_source = snapshot.plan.source  # type: ignore[assignment]
        report.local_targets.extend(snapshot.plan.local_targets)
        report.local_volumes.extend(snapshot.plan.local_volumes)
    for kind in KINDS:
        if kind.name in snapshot.results:
            kind.section(report, snapshot.results[kind.name])
    return report
