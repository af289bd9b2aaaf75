"""The status page at `/`: one server-rendered HTML page a person can read.

Readiness for install and runtime first, then every requirement, the node × target
egress matrix, capacity with cluster totals, per-node freshness and the shared
volume. No external assets (clusters are often offline), no script, a meta refresh.

Agents are untrusted: every string that came from a report (node names, targets,
messages, sources, models...) goes through `esc` before it touches the markup, in
text and in attributes alike. The page is built by joining strings, with escaping
of repeated values (target names) done once, so a 1000-node cluster stays cheap.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from collector.capacity import gpu_capacity
from collector.kube.facts import KubeNode
from collector.published import Published
from collector.rules.model import Verdict
from collector.state import NodeEntry
from preflight.enums import MOUNT_STATES, PHASES, REASONS, WRITE_CHECKS
from preflight.v1 import report_pb2 as pb

REFRESH_SECONDS = 15
GIB = 1024**3
# Display only: a skew beyond this is highlighted (timestamps from the agent get suspect).
SKEW_HIGHLIGHT_SECONDS = 5.0
# How many node or target names a requirement row lists before "and N more".
LIST_LIMIT = 8
DASH = '<span class="muted">—</span>'

PHASE_WORDS = {
    "install": ("Ready to install Run:AI", "NOT ready to install"),
    "runtime": ("Ready to run Run:AI", "NOT ready to run"),
}


def esc(value: object) -> str:
    """Escapes text and attribute values alike (quotes included)."""
    return html.escape(str(value), quote=True)


def iso(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError, OSError):
        return "(invalid time)"  # outside what datetime can show: say so, never a 500


def span_text(seconds: float) -> str:
    """A coarse human duration: 45s, 12m, 3h, 2d."""
    s = abs(seconds)
    if s < 90:
        return f"{s:.0f}s"
    if s < 90 * 60:
        return f"{s / 60:.0f}m"
    if s < 36 * 3600:
        return f"{s / 3600:.0f}h"
    return f"{s / 86400:.0f}d"


def ago(ts: float, now: float) -> str:
    delta = now - ts
    if delta < -1:
        return f"in {span_text(delta)}"  # a clock ahead of ours: say so instead of hiding it
    if delta < 1:
        return "just now"
    return f"{span_text(delta)} ago"


def when(ts: float | None, now: float, prefix: str = "") -> str:
    """Relative time as text, the exact UTC time in the tooltip."""
    if not ts:
        return DASH
    return f'<time datetime="{iso(ts)}" title="{iso(ts)}">{prefix}{ago(ts, now)}</time>'


def millis(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def listed(items: Iterable[str], limit: int = LIST_LIMIT) -> str:
    values = list(items)
    shown = ", ".join(esc(v) for v in values[:limit])
    if len(values) > limit:
        shown += f" and {len(values) - limit} more"
    return shown


STYLE = """
body{font:13px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 16px 32px;
color:#1f2328;background:#fff}
h1{font-size:20px;margin:12px 0 2px}h2{font-size:16px;margin:22px 0 6px}
.meta{color:#59636e;margin:0 0 10px}.muted{color:#8c959f}
nav a{margin-right:12px;color:#0969da}
#readiness{margin:10px 0;display:flex;flex-direction:column;gap:6px}
.phase{padding:10px 14px;border-radius:6px;font-size:17px;font-weight:600;border:1px solid}
.phase.ready{background:#dafbe1;border-color:#4ac26b;color:#116329}
.phase.not-ready{background:#ffebe9;border-color:#ff8182;color:#a40e26}
.phase .detail{font-weight:400;font-size:14px}
table{border-collapse:collapse;margin:4px 0}
th,td{border:1px solid #d1d9e0;padding:3px 7px;text-align:left;vertical-align:top}
thead th{background:#f6f8fa;position:sticky;top:0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;min-width:52px;text-align:center;padding:1px 6px;border-radius:10px;
font-weight:600;font-size:12px}
.badge.pass{background:#dafbe1;color:#116329}.badge.warn{background:#fff8c5;color:#7d4e00}
.badge.fail{background:#ffebe9;color:#a40e26}.badge.unknown{background:#eaeef2;color:#424a53}
td.reason{max-width:640px}
#egress-matrix td,time,.nowrap{white-space:nowrap}
.cell-up{background:#dafbe1;color:#116329}
.cell-down{background:#ffcecb;color:#82071e;font-weight:600}
.cell-none{background:#f6f8fa;color:#8c959f}
#egress-matrix th.node,#nodes th.node,#capacity th.node,#mounts th.node{font-weight:600;
max-width:260px;overflow-wrap:anywhere}
#egress-matrix th.node{min-width:180px}
#egress-matrix thead th{overflow-wrap:break-word}#egress-matrix small{font-weight:400}
tr.stale td,tr.stale th{background:#eaeef2 !important;color:#6e7781 !important}
.tag{display:inline-block;font-size:11px;font-weight:600;padding:0 5px;border-radius:8px;
background:#6e7781;color:#fff;margin-left:4px}
.tag.missing{background:#cf222e}
.bad{color:#a40e26;font-weight:600}.good{color:#116329}.warn{color:#7d4e00;font-weight:600}
tr#capacity-totals td,tr#capacity-totals th{font-weight:700;background:#f6f8fa;
border-top:2px solid #8c959f}
td.cell-bad{background:#ffcecb;color:#82071e;font-weight:600}
#gpu-capacity small,#gpu-models small{font-weight:400}
"""


Section = Callable[[tuple[NodeEntry, ...]], str]


def _per_node_sections(
    data: Published, sections: list[Section]
) -> tuple[list[str], dict[str, str]]:
    """Every section over the usable nodes; a node whose data makes one raise is left out.

    On a failure, the section is rendered for each node alone to find the culprit(s)
    (only on that path), they are marked unusable with the reason, and every section
    is rendered again without them, so no section shows a node another one hides.
    """
    unusable = dict(data.unusable)
    while True:
        nodes = tuple(n for n in data.state.nodes if n.name not in unusable)
        out: list[str] = []
        culprits: dict[str, str] = {}
        for section in sections:
            try:
                out.append(section(nodes))
                continue
            except Exception as error:
                first = error
            for node in nodes:
                try:
                    section((node,))
                except Exception as error:
                    culprits[node.name] = data.faults.record("status_page", node.name, error)
            if culprits:
                break
            reason = data.faults.record("status_page", "(page)", first)
            out.append(f'<p class="bad">This section could not be rendered: {esc(reason)}</p>')
        if not culprits:
            return out, unusable
        unusable.update(culprits)


def _unusable(data: Published, unusable: dict[str, str]) -> str:
    if not unusable:
        return ""
    rows = "".join(
        f'<tr data-node="{esc(n.name)}"><th class="node">{esc(n.name)}</th>'
        f"<td>{when(n.received_at, data.state.taken_at)}</td>"
        f'<td class="bad">{esc(unusable[n.name])}</td></tr>'
        for n in data.state.nodes
        if n.name in unusable
    )
    return (
        '<h2>Reports unusable</h2><p class="meta">These nodes report, but their data could '
        "not be judged or shown; every other node is judged without them.</p>"
        '<table id="unusable"><thead><tr><th>node</th><th>last report</th><th>reason</th>'
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )


def render_status_page(data: Published) -> str:
    """The whole page as one string; every agent-supplied value is escaped."""
    now = data.state.taken_at
    kube_nodes = {k.name: k for k in data.kube.nodes} if data.kube.available else {}
    agent_names = {n.name for n in data.state.nodes}
    without_agent = [k for name, k in kube_nodes.items() if name not in agent_names]

    def capacity(nodes: tuple[NodeEntry, ...]) -> str:
        state = dataclasses.replace(data.state, nodes=nodes)
        return _capacity(dataclasses.replace(data, state=state), kube_nodes, without_agent)

    def gpu_capacity_section(nodes: tuple[NodeEntry, ...]) -> str:
        state = dataclasses.replace(data.state, nodes=nodes)
        return _gpu_capacity(dataclasses.replace(data, state=state))

    (egress, capacity_html, gpu_html, nodes_html, mounts), unusable = _per_node_sections(
        data,
        [
            lambda nodes: _egress_matrix(nodes, now, data.mirror_of),
            capacity,
            gpu_capacity_section,
            lambda nodes: _nodes(nodes, without_agent, now),
            _mounts,
        ],
    )
    parts: list[str] = [
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>Preflight — {esc(data.profile_name)}</title>",
        f"<style>{STYLE}</style></head><body>",
    ]
    parts.append(_header(data, len(without_agent)))
    parts.append(_readiness(data))
    parts.append(_requirements(data.verdicts, now, dict(data.phases)))
    parts.append(_unusable(data, unusable))
    parts.extend((egress, capacity_html, gpu_html, nodes_html, mounts))
    parts.append("</body></html>\n")
    return "".join(parts)


def _header(data: Published, missing: int) -> str:
    nodes = data.state.nodes
    stale = sum(1 for n in nodes if not n.up)
    counts = f"{len(nodes)} nodes reporting" if not stale else f"{len(nodes)} nodes, {stale} stale"
    if missing:
        counts += f", {missing} Kubernetes nodes without an agent"
    if data.kube.available:
        kube = f"Kubernetes {esc(data.kube.server_version)}, {len(data.kube.nodes)} nodes"
        platform = data.kube.platform
        if platform is not None and platform.openshift.ok and platform.openshift_version:
            kube += f" (OpenShift {esc(platform.openshift_version)})"
    else:
        kube = f'Kubernetes: <span class="warn">{esc(data.kube.error)}</span>'
    return (
        "<h1>Preflight — Run:AI cluster prerequisites</h1>"
        f'<p class="meta">profile <b>{esc(data.profile_name)}</b> · {counts} · {kube} · '
        f"generated {iso(data.state.taken_at)} · refreshes every {REFRESH_SECONDS}s</p>"
        '<nav><a href="#requirements">requirements</a><a href="#egress-matrix">egress</a>'
        '<a href="#capacity">capacity</a><a href="#nodes">nodes</a>'
        '<a href="#mounts">shared volume</a><a href="/api/v1/verdicts">JSON</a>'
        '<a href="/metrics">metrics</a></nav>'
    )


def _readiness(data: Published) -> str:
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


def _requirements(
    verdicts: tuple[Verdict, ...], now: float, phases: dict[str, tuple[str, ...]]
) -> str:
    needed_for: dict[str, list[str]] = {}
    for phase, required in phases.items():
        for r in required:
            needed_for.setdefault(r, []).append(phase)
    rows = []
    for v in verdicts:
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


def _stale(node: NodeEntry) -> str:
    return "" if node.up else ' class="stale"'


def _node_label(node: NodeEntry) -> str:
    label = esc(node.name)
    return label if node.up else f'{label}<span class="tag">stale</span>'


def _mirror_tag(mirror: str | None) -> str:
    # The column keeps the profile's name; the tag says where it is really probed.
    if mirror is None:
        return ""
    return f'<br><small class="mirror" title="probed at its mirror">mirror {esc(mirror)}</small>'


def _egress_matrix(
    nodes: tuple[NodeEntry, ...], now: float, mirror_of: dict[str, str] | None = None
) -> str:
    # Columns: the union of reported targets, in the order agents report them
    # (agents share the profile's order, so this reads like the profile).
    targets: dict[str, str] = {}
    for node in nodes:
        for reported in node.report.egress:
            if reported.target not in targets:
                targets[reported.target] = esc(reported.target)
    if not targets:
        return (
            '<h2>Egress</h2><p id="egress-matrix" class="muted">No egress results reported yet.</p>'
        )
    down_cells = 0
    down_nodes = 0
    rows = []
    for node in nodes:
        results = {e.target: e for e in node.report.egress}
        last_up = dict(node.last_success)
        name = esc(node.name)
        cells = [f'<th class="node">{_node_label(node)}</th>']
        node_down = False
        for target, target_attr in targets.items():
            where = f'data-node="{name}" data-target="{target_attr}"'
            e = results.get(target)
            if e is None:
                cells.append(f'<td class="cell-none" {where} title="not probed here">—</td>')
            elif e.outcome == pb.OUTCOME_UP:
                ttfb = e.time_to_first_byte_seconds or e.total_seconds
                detail = f"HTTP {e.http_status}, total {millis(e.total_seconds)}"
                if e.proxy_used:
                    detail += f", via proxy {e.proxy}"
                cells.append(
                    f'<td class="cell-up" {where} title="{esc(detail)}">up '
                    f"<small>{millis(ttfb)}</small></td>"
                )
            else:
                down_cells += 1
                node_down = True
                reason = REASONS.name(e.reason) or "down"
                phase = PHASES.name(e.failed_phase)
                title = e.message or reason
                if target in last_up:
                    title += f" — last up {ago(last_up[target], now)} ({iso(last_up[target])})"
                else:
                    title += " — never up since the collector started"
                at = f"<small> at {esc(phase)}</small>" if phase else ""
                cells.append(
                    f'<td class="cell-down" {where} data-reason="{esc(reason)}" '
                    f'title="{esc(title)}">{esc(reason)}{at}</td>'
                )
        down_nodes += node_down
        rows.append(f"<tr{_stale(node)}>{''.join(cells)}</tr>")
    # Long host names break after dots and slashes rather than mid-word.
    mirrors = mirror_of or {}
    head = "".join(
        f"<th>{t.replace('.', '.<wbr>').replace('/', '/<wbr>')}{_mirror_tag(mirrors.get(k))}</th>"
        for k, t in targets.items()
    )
    summary = (
        f"{down_cells} node×target pairs down on {down_nodes} of {len(nodes)} nodes"
        if down_cells
        else f"every node reaches every target ({len(nodes)} × {len(targets)})"
    )
    return (
        f'<h2>Egress</h2><p class="meta">{summary}; a red cell names the failure reason '
        "and the phase it failed in (hover for the message); green shows time to first byte.</p>"
        f'<table id="egress-matrix"><thead><tr><th>node</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _gpu_counts(report: pb.NodeReport) -> tuple[int | None, int | None]:
    """(PCI count, driver count); None where the agent sent no GPU section.

    The driver count is the kernel driver's (what the nvidia module drives, read without
    NVML) where the agent reports it, else NVML's (agents without the kernel view).
    """
    if not report.HasField("gpus"):
        return None, None
    g = report.gpus
    pci = g.pci_count if g.pci_scanned else None
    if g.kernel_module != pb.KERNEL_MODULE_UNSPECIFIED:
        return pci, g.kernel_driver_count
    return pci, g.driver_count


def _gpu_verdict(verdicts: tuple[Verdict, ...]) -> tuple[set[str], dict[str, str]]:
    """(nodes the gpu_nodes rule flags, its note per node): the page shows the rule's
    judgement and never compares counts itself."""
    for v in verdicts:
        if v.requirement == "gpu_nodes":
            flagged = set(v.nodes) if v.status in ("warn", "fail") else set()
            return flagged, dict(v.node_notes)
    return set(), {}


def _capacity(
    data: Published, kube_nodes: dict[str, KubeNode], without_agent: list[KubeNode]
) -> str:
    kube_ok = data.kube.available
    total_cpu = 0.0
    total_mem = 0
    total_pci = 0
    total_driver = 0
    total_alloc = 0
    rows = []
    gpu_flagged, gpu_notes = _gpu_verdict(data.verdicts)

    def num(value: float | int | None, fmt: str = "{}") -> str:
        return DASH if value is None else fmt.format(value)

    for node in data.state.nodes:
        r = node.report
        cpu: int | None = None
        mem: int | None = None
        model = ""
        if r.HasField("hardware"):
            cpu = r.hardware.logical_cores
            mem = r.hardware.memory_total_bytes
            model = r.hardware.cpu_model
        pci, driver = _gpu_counts(r)
        note = gpu_notes.get(node.name, "")
        kube = kube_nodes.get(node.name)
        alloc = kube.allocatable_gpus if kube is not None else None
        total_cpu += cpu or 0
        total_mem += mem or 0
        total_pci += pci or 0
        total_driver += driver or 0
        total_alloc += alloc or 0
        flagged = node.name in gpu_flagged
        gpu_class = ' class="num bad"' if flagged else ' class="num"'
        note_class = "warn" if flagged else "muted"
        driver_text = num(driver) + (
            f' <small class="{note_class}">{esc(note)}</small>' if note else ""
        )
        rows.append(
            f'<tr{_stale(node)} data-node="{esc(node.name)}">'
            f'<th class="node">{_node_label(node)}</th><td>{esc(model) or "—"}</td>'
            f'<td class="num">{num(cpu)}</td>'
            f'<td class="num">{num(None if mem is None else mem / GIB, "{:.1f}")}</td>'
            f"<td{gpu_class}>{num(pci)}</td><td{gpu_class}>{driver_text}</td>"
            f"<td{gpu_class}>{num(alloc)}</td></tr>"
        )
    for k in without_agent:
        # No agent: only Kubernetes' own capacity figures are known for this node.
        total_cpu += k.capacity_cpu
        total_mem += k.capacity_memory_bytes
        total_alloc += k.allocatable_gpus
        rows.append(
            f'<tr data-node="{esc(k.name)}"><th class="node">{esc(k.name)}'
            '<span class="tag missing">no agent</span></th>'
            '<td class="muted">Kubernetes capacity</td>'
            f'<td class="num">{k.capacity_cpu:g}</td>'
            f'<td class="num">{k.capacity_memory_bytes / GIB:.1f}</td>'
            f'<td class="num muted">—</td><td class="num muted">—</td>'
            f'<td class="num">{k.allocatable_gpus}</td></tr>'
        )
    count = len(data.state.nodes) + len(without_agent)
    alloc_total = str(total_alloc) if kube_ok else DASH
    rows.append(
        f'<tr id="capacity-totals"><th>cluster total ({count} nodes)</th><td></td>'
        f'<td class="num">{total_cpu:g}</td><td class="num">{total_mem / GIB:.1f}</td>'
        f'<td class="num">{total_pci}</td><td class="num">{total_driver}</td>'
        f'<td class="num">{alloc_total}</td></tr>'
    )
    alloc_note = (
        "allocatable from the Kubernetes API"
        if kube_ok
        else "allocatable needs the Kubernetes API (—)"
    )
    return (
        f'<h2>Capacity</h2><p class="meta">CPU cores are logical cores; GPUs counted on the '
        f"PCI bus, by the kernel driver, and {alloc_note}; red counts are those the gpu_nodes "
        "requirement flags.</p>"
        '<table id="capacity"><thead><tr><th>node</th><th>CPU model</th>'
        '<th class="num">CPU cores</th><th class="num">memory GiB</th>'
        '<th class="num">GPUs pci</th><th class="num">GPUs driver</th>'
        '<th class="num">GPUs allocatable</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _gib(value: int | None) -> str:
    return DASH if value is None else f"{value / GIB:,.0f}"


def _gpu_capacity(data: Published) -> str:
    """GPU capacity per node and totals per model (collector.capacity computes, this draws)."""
    capacity = gpu_capacity(data.state.nodes)
    rows = []
    for n in capacity.nodes:
        if not n.gpus and n.images_free is None:
            continue
        models = "<br>".join(f"{count} × {esc(model)}" for model, count in n.models) or DASH
        memory = sorted(set(n.memory_bytes))
        memory_text = " / ".join(f"{m / GIB:.0f}" for m in memory) if memory else DASH
        mig = DASH
        if n.mig_enabled:
            mig = f"{n.mig_instances} <small>on {n.mig_enabled} GPUs</small>"
        driver = esc(n.driver) or DASH
        source = f" <small>({esc(n.source)})</small>" if n.source == "kernel" else ""
        if n.driver_problems:
            reasons = " ".join(esc(r) for r, _ in n.driver_problems)
            title = esc("; ".join(t for _, t in n.driver_problems))
            driver_cell = (
                f'<td class="cell-bad" data-reason="{reasons}" title="{title}">{driver}{source}'
                f"<br><small>{esc(', '.join(r for r, _ in n.driver_problems))}</small></td>"
            )
        else:
            driver_cell = f"<td>{driver}{source}</td>"
        images = DASH
        if n.images_free is not None:
            images = (
                f"{_gib(n.images_free)} <small>of {_gib(n.images_capacity)} "
                f"({esc(n.images_role)})</small>"
            )
        stale = "" if n.up else ' class="stale"'
        rows.append(
            f'<tr{stale} data-node="{esc(n.node)}" '
            f'data-model="{esc(n.model)}"><th class="node">{esc(n.node)}</th>'
            f'<td>{models}</td><td class="num">{memory_text}</td><td class="num">{mig}</td>'
            f"{driver_cell}<td>{esc(n.cuda) or DASH}</td>"
            f'<td class="num">{images}</td><td class="num">{_gib(n.kubelet_free)}</td></tr>'
        )
    if not rows:
        return '<h2>GPU capacity</h2><p id="gpu-capacity" class="muted">No capacity reported.</p>'
    model_rows = []
    for t in capacity.models:
        drivers = ", ".join(f"{esc(v)} <small>× {c}</small>" for v, c in sorted(t.drivers.items()))
        differs = ' class="cell-bad" data-reason="driver_differs"' if len(t.drivers) > 1 else ""
        model_rows.append(
            f'<tr data-model="{esc(t.model)}"><th>{esc(t.model)}</th>'
            f'<td class="num">{len(t.nodes)}</td><td class="num">{t.gpus}</td>'
            f'<td class="num">{_gib(t.memory_bytes) if t.memory_bytes else DASH}</td>'
            f'<td class="num">{t.mig_instances or DASH}</td><td{differs}>{drivers or DASH}</td>'
            "</tr>"
        )
    return (
        '<h2>GPU capacity</h2><p class="meta">Per node from NVML (or the kernel driver\'s '
        "records where NVML is not reachable); free space in GiB where container images land "
        "and where the kubelet keeps volumes. A red driver cell names its reason: "
        "<b>driver_differs</b> (nodes of one model on different drivers) or "
        "<b>version_mismatch</b> (NVML: driver/library version mismatch).</p>"
        '<table id="gpu-capacity"><thead><tr><th>node</th><th>GPUs</th>'
        '<th class="num">GiB per GPU</th><th class="num">MIG instances</th><th>driver</th>'
        '<th>CUDA</th><th class="num">free for images GiB</th>'
        '<th class="num">free for kubelet GiB</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        '<h3>Totals by GPU model</h3><table id="gpu-models"><thead><tr><th>model</th>'
        '<th class="num">nodes</th><th class="num">GPUs</th><th class="num">memory GiB</th>'
        '<th class="num">MIG instances</th><th>drivers <small>(× nodes)</small></th>'
        f"</tr></thead><tbody>{''.join(model_rows)}</tbody></table>"
    )


def _nodes(nodes: tuple[NodeEntry, ...], without_agent: list[KubeNode], now: float) -> str:
    rows = []
    for node in nodes:
        r = node.report
        hw = r.hardware
        skew = node.clock_skew_seconds
        skew = 0.0 if abs(skew) < 0.05 else skew  # no "-0.0 s"
        skew_class = "num warn" if abs(skew) >= SKEW_HIGHLIGHT_SECONDS else "num"
        errors = "".join(
            f'<div title="{esc(p.message)}">{esc(p.probe)}'
            f"{' (timed out)' if p.timed_out else ''}</div>"
            for p in r.probe_errors
        )
        agent = '<span class="good">up</span>' if node.up else '<span class="bad">stale</span>'
        rows.append(
            f'<tr{_stale(node)} data-node="{esc(node.name)}">'
            f'<th class="node">{esc(node.name)}</th><td>{agent}</td>'
            f"<td>{when(node.received_at, now)}</td>"
            f'<td class="{skew_class}">{skew:+.1f} s</td>'
            f"<td>{esc(r.agent_version)}</td><td>{esc(hw.kernel_release)}</td>"
            f"<td>{esc(hw.os_release)}</td><td>{esc(hw.architecture)}</td>"
            f'<td class="bad">{errors}</td></tr>'
        )
    for k in without_agent:
        rows.append(
            f'<tr data-node="{esc(k.name)}"><th class="node">{esc(k.name)}</th>'
            '<td><span class="tag missing">no agent</span></td><td class="muted">never</td>'
            f'<td></td><td></td><td class="muted">kubelet {esc(k.kubelet_version)}</td>'
            "<td></td><td></td><td></td></tr>"
        )
    return (
        "<h2>Nodes</h2>"
        '<table id="nodes"><thead><tr><th>node</th><th>agent</th><th>last report</th>'
        '<th class="num" title="agent clock minus collector clock">clock skew</th>'
        "<th>agent version</th><th>kernel</th><th>OS</th><th>arch</th><th>probe errors</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _writable(m: pb.MountResult) -> str:
    check = WRITE_CHECKS.name(m.write_check)
    if check == "ok":
        return f'<span class="good">yes</span> <small>{millis(m.write_latency_seconds)}</small>'
    if check == "failed":
        return '<span class="bad">NO</span>'
    if check == "not_expected":
        return "not checked (read-only)" if m.read_only else "not checked"
    return DASH


def _mounts(nodes: tuple[NodeEntry, ...]) -> str:
    rows = []
    for node in nodes:
        name = esc(node.name)
        for m in node.report.mounts:
            state = MOUNT_STATES.name(m.state) or "unknown"
            state_class = "good" if state == "mounted" else "bad"
            peers = m.marker.peers
            peer_names = ", ".join(p.node_name for p in peers)
            fs = esc(m.fs_type) + ("" if m.network_filesystem or not m.fs_type else " (local)")
            rows.append(
                f'<tr{_stale(node)} data-node="{name}">'
                f'<th class="node">{_node_label(node)}</th><td>{esc(m.path)}</td>'
                f'<td class="{state_class}">{esc(state)}</td><td>{fs}</td>'
                f"<td>{esc(m.source)}</td><td>{_writable(m)}</td>"
                f'<td class="num" title="{esc(peer_names)}">{len(peers)}</td>'
                f"<td>{esc(m.message)}</td></tr>"
            )
    if not rows:
        return '<h2>Shared volume</h2><p id="mounts" class="muted">No mounts reported.</p>'
    return (
        '<h2>Shared volume</h2><p class="meta">peers seen: other nodes whose marker file '
        "this node read on the volume (hover for names).</p>"
        '<table id="mounts"><thead><tr><th>node</th><th>path</th><th>state</th>'
        "<th>fs type</th><th>source</th><th>writable</th>"
        '<th class="num">peers seen</th><th>message</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
