"""The short human summary of `preflight-agent --once --format text`: each kind's lines."""

from __future__ import annotations

from agent.kinds import KINDS
from preflight.v1 import report_pb2 as pb


def to_text(report: pb.NodeReport) -> str:
    source = pb.PlanSource.Name(report.plan_source).removeprefix("PLAN_SOURCE_").lower()
    local = ", ".join([*report.local_targets, *report.local_volumes])
    lines = [
        f"node {report.node_name} (agent {report.agent_version})",
        f"plan: {report.plan_version or 'none'} ({source})"
        + (f", local: {local}" if local else ""),
    ]
    for kind in KINDS:
        lines.extend(kind.text(report))
    lines.extend(
        f"probe {f.probe} failed: {f.message}" + (" (deadline)" if f.timed_out else "")
        for f in report.probe_errors
    )
    return "\n".join(lines)
