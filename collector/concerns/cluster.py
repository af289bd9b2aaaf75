"""Concern `cluster`: the verdicts and readiness, the Kubernetes nodes, what ingest took in.

/metrics: one-hot requirement status, readiness per phase, one series per Kubernetes node,
the report counters. JSON: a verdict as /api/v1/verdicts lists it. Page: the readiness
banners and the requirements table, drawn from the verdicts as the rules gave them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from collector.concerns.base import Concern, Page, Sample, Section, counter, gauge
from collector.concerns.html import DASH, esc, listed, when
from collector.published import Published
from collector.rules.model import STATUSES, Verdict
from collector.state import NodeEntry

REQUIREMENT_STATUS = gauge(
    "preflight_requirement_status",
    "1 for the current status of each requirement (one-hot over pass/warn/fail/unknown).",
    ("requirement", "status"),
    False,
)
CLUSTER_READY = gauge(
    "preflight_cluster_ready",
    "1 when every requirement of the phase passes or warns.",
    ("phase",),
    False,
)
KUBERNETES_NODE_INFO = gauge(
    "preflight_kubernetes_node_info",
    "One series per Kubernetes node, from the Kubernetes API.",
    ("node", "control_plane"),
    False,
)
REPORTS_RECEIVED = counter(
    "preflight_reports_received_total", "Reports accepted since the collector started."
)
REPORTS_REJECTED = counter(
    "preflight_reports_rejected_total", "Reports rejected, by reason.", ("reason",)
)

PHASE_WORDS = {
    "install": ("Ready to install Run:AI", "NOT ready to install"),
    "runtime": ("Ready to run Run:AI", "NOT ready to run"),
}


def cluster_samples(view: Published, expiries: Iterable[dict[str, float]]) -> Iterator[Sample]:
    for verdict in view.verdicts:
        for s in STATUSES:
            yield REQUIREMENT_STATUS, (verdict.requirement, s), 1.0 if verdict.status == s else 0.0
    for phase, ok in view.ready:
        yield CLUSTER_READY, (phase,), 1.0 if ok else 0.0
    for name, control_plane in view.kubernetes_nodes:
        yield KUBERNETES_NODE_INFO, (name, "true" if control_plane else "false"), 1.0
    yield REPORTS_RECEIVED, (), float(view.state.reports_received)
    # Every reason from the start, at 0: increase() then sees a reason's first rejection.
    for reason, count in view.state.rejected:
        yield REPORTS_REJECTED, (reason,), float(count)


def verdict_json(v: Verdict) -> dict[str, Any]:
    return {
        "requirement": v.requirement,
        "status": v.status,
        "reason": v.reason,
        "nodes": list(v.nodes),
        "targets": list(v.targets),
        "since": v.since,
    }


def readiness(page: Page, nodes: tuple[NodeEntry, ...]) -> str:
    data = page.data
    by_id = {v.requirement: v for v in data.verdicts}
    rows = []
    for phase, ok in data.ready:
        ready_words, not_ready_words = PHASE_WORDS.get(
            phase, (f"Ready for {phase}", f"NOT ready for {phase}")
        )
        required = dict(data.phases).get(phase, tuple(by_id))
        verdicts = [by_id[r] for r in required if r in by_id]
        blocking = [v for v in verdicts if v.status not in ("pass", "warn")]
        warnings = [v for v in verdicts if v.status == "warn"]
        if ok:
            text = esc(ready_words)
            if warnings:
                text += (
                    '<span class="detail"> (with warnings: '
                    f"{', '.join(esc(v.requirement) for v in warnings)})</span>"
                )
        else:
            reasons = ", ".join(f"{esc(v.requirement)} ({esc(v.status)})" for v in blocking)
            text = f"{esc(not_ready_words)}: " + (
                f'<span class="detail">{reasons}</span>' if reasons else "see requirements"
            )
        state = "ready" if ok else "not-ready"
        rows.append(
            f'<div class="phase {state}" id="readiness-{esc(phase)}" '
            f'data-phase="{esc(phase)}" data-ready="{str(ok).lower()}">{text}</div>'
        )
    return f'<section id="readiness">{"".join(rows)}</section>'


def requirements(page: Page, nodes: tuple[NodeEntry, ...]) -> str:
    now = page.now
    needed_for: dict[str, list[str]] = {}
    for phase, required in page.data.phases:
        for r in required:
            needed_for.setdefault(r, []).append(phase)
    rows = []
    for v in page.data.verdicts:
        involved = []
        if v.nodes:
            involved.append(f"nodes: {listed(v.nodes)}")
        if v.targets:
            involved.append(f"targets: {listed(v.targets)}")
        status = esc(v.status)
        rows.append(
            f'<tr class="req-{status}" data-requirement="{esc(v.requirement)}">'
            f"<th>{esc(v.requirement)}</th>"
            f'<td><span class="badge {status}">{status}</span></td>'
            f'<td class="reason">{esc(v.reason)}</td>'
            f"<td>{'<br>'.join(involved) or DASH}</td>"
            f'<td class="nowrap">{esc(", ".join(needed_for.get(v.requirement, ())))}</td>'
            f"<td>{when(v.since, now, 'since ')}</td></tr>"
        )
    return (
        '<h2>Requirements</h2><table id="requirements"><thead><tr><th>requirement</th>'
        "<th>state</th><th>reason</th><th>involved</th><th>needed for</th><th>since</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


READINESS = Section("readiness", readiness, per_node=False)
REQUIREMENTS = Section("requirements", requirements, nav="requirements", per_node=False)

CONCERN = Concern(
    name="cluster",
    families=(
        REQUIREMENT_STATUS,
        CLUSTER_READY,
        KUBERNETES_NODE_INFO,
        REPORTS_RECEIVED,
        REPORTS_REJECTED,
    ),
    cluster_samples=cluster_samples,
    sections=(READINESS, REQUIREMENTS),
)
