"""Concern `agents`: is each node's agent reporting, how fresh, which plan it runs.

/metrics: up, last report, clock skew, plan outdated. JSON: the node's identity and
freshness fields and its `plan`. Page: the Nodes table (agent state, last report, clock
skew, versions, probe errors, and the Kubernetes nodes without an agent).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from collector.concerns.base import Concern, NodeJson, Page, Sample, Section, gauge
from collector.concerns.html import esc, stale_class, when
from collector.plan import PlanIndex
from collector.rules.clock_sync import REQUIREMENT as CLOCK_SYNC
from collector.rules.model import Verdict
from collector.state import NodeEntry
from preflight.enums import PLAN_SOURCES
from preflight.v1 import report_pb2 as pb

AGENT_UP = gauge("preflight_agent_up", "1 while the node's agent reports in time.", ("node",), True)
AGENT_LAST_REPORT = gauge(
    "preflight_agent_last_report_timestamp_seconds",
    "When the collector last accepted a report from the node.",
    ("node",),
    True,
)
AGENT_CLOCK_SKEW = gauge(
    "preflight_agent_clock_skew_seconds",
    "Agent clock minus collector clock at the last report (includes network delay).",
    ("node",),
    True,
)
AGENT_PLAN_OUTDATED = gauge(
    "preflight_agent_plan_outdated",
    "1 while the node's agent probes another plan than the collector's profile gives it.",
    ("node",),
    True,
)
# The skew cell takes the colour of the clock_sync verdict for the nodes it names.
_STATUS_CLASS = {"warn": "num warn", "fail": "num bad"}


def node_samples(
    node: NodeEntry, allocatable_gpus: int | None, expected_plan: str | None
) -> Iterator[Sample]:
    name = node.name
    yield AGENT_UP, (name,), 1.0 if node.up else 0.0
    yield AGENT_LAST_REPORT, (name,), node.received_at
    yield AGENT_CLOCK_SKEW, (name,), node.clock_skew_seconds
    if expected_plan is not None:
        outdated = node.report.plan_version != expected_plan
        yield AGENT_PLAN_OUTDATED, (name,), 1.0 if outdated else 0.0


def plan_json(report: pb.NodeReport, plans: PlanIndex, node: str) -> dict[str, Any]:
    """The plan the node probes, whether it is the current one, and its local changes."""
    # EnumNames, not PlanSource.Name: a newer agent's value is "unknown", never a ValueError.
    source = PLAN_SOURCES.name(report.plan_source) or "unspecified"
    return {
        "version": report.plan_version,
        "expected_version": plans.version_for(node),
        "outdated": plans.outdated(node, report.plan_version),
        "source": source,
        "local_targets": list(report.local_targets),
        "local_volumes": list(report.local_volumes),
    }


def summary(node: NodeEntry, ctx: NodeJson) -> dict[str, Any]:
    report = node.report
    return {
        "node": node.name,
        "up": node.up,
        "first_seen": node.first_seen,
        "last_report": node.received_at,
        "last_report_age_seconds": round(ctx.now - node.received_at, 3),
        "clock_skew_seconds": round(node.clock_skew_seconds, 3),
        "agent_version": report.agent_version,
        "plan": plan_json(report, ctx.plans, node.name),
    }


def _clock_classes(verdicts: tuple[Verdict, ...]) -> dict[str, str]:
    """Node → skew cell class, from the clock_sync verdict (the page never compares skews)."""
    for v in verdicts:
        if v.requirement == CLOCK_SYNC and v.status in _STATUS_CLASS:
            return dict.fromkeys(v.nodes, _STATUS_CLASS[v.status])
    return {}


def nodes_table(page: Page, nodes: tuple[NodeEntry, ...]) -> str:
    now = page.now
    clock_classes = _clock_classes(page.data.verdicts)
    rows = []
    for node in nodes:
        r = node.report
        hw = r.hardware
        skew = node.clock_skew_seconds
        skew = 0.0 if abs(skew) < 0.05 else skew  # no "-0.0 s"
        skew_class = clock_classes.get(node.name, "num")
        errors = "".join(
            f'<div title="{esc(p.message)}">{esc(p.probe)}'
            f"{' (timed out)' if p.timed_out else ''}</div>"
            for p in r.probe_errors
        )
        agent = '<span class="good">up</span>' if node.up else '<span class="bad">stale</span>'
        rows.append(
            f'<tr{stale_class(node)} data-node="{esc(node.name)}">'
            f'<th class="node">{esc(node.name)}</th><td>{agent}</td>'
            f"<td>{when(node.received_at, now)}</td>"
            f'<td class="{skew_class}">{skew:+.1f} s</td>'
            f"<td>{esc(r.agent_version)}</td><td>{esc(hw.kernel_release)}</td>"
            f"<td>{esc(hw.os_release)}</td><td>{esc(hw.architecture)}</td>"
            f'<td class="bad">{errors}</td></tr>'
        )
    for k in page.without_agent:
        rows.append(
            f'<tr data-node="{esc(k.name)}"><th class="node">{esc(k.name)}</th>'
            '<td><span class="tag missing">no agent</span></td><td class="muted">never</td>'
            f'<td></td><td></td><td class="muted">kubelet {esc(k.kubelet_version)}</td>'
            "<td></td><td></td><td></td></tr>"
        )
    return (
        "<h2>Nodes</h2>"
        '<table id="nodes"><thead><tr><th>node</th><th>agent</th><th>last report</th>'
        '<th class="num" title="agent clock minus collector clock; coloured where the '
        'clock_sync requirement flags the node">clock skew</th>'
        "<th>agent version</th><th>kernel</th><th>OS</th><th>arch</th><th>probe errors</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


NODES = Section("nodes", nodes_table, nav="nodes")

CONCERN = Concern(
    name="agents",
    families=(AGENT_UP, AGENT_LAST_REPORT, AGENT_CLOCK_SKEW, AGENT_PLAN_OUTDATED),
    node_samples=node_samples,
    summary=summary,
    sections=(NODES,),
)
