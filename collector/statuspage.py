"""The status page at `/`: one server-rendered HTML page a person can read.

Readiness for install and runtime first, then every requirement, the node × target
egress matrix, capacity with cluster totals, per-node freshness and the shared
volume. No external assets (clusters are often offline), no script, a meta refresh.

This module lays the page out; the sections themselves belong to their concerns
(collector.concerns, in `PAGE` order), and show verdicts as the rules gave them, never
judging again. It also keeps one node's bad data from taking the page down: such a node
is left out of every section and listed under "Reports unusable".

Agents are untrusted: every string that came from a report (node names, targets,
messages, sources, models...) goes through `esc` before it touches the markup, in
text and in attributes alike. The page is built by joining strings, with escaping
of repeated values (target names) done once, so a 1000-node cluster stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable

from collector.concerns import PAGE, Page, Section
from collector.concerns.html import esc, iso, when
from collector.published import Published
from collector.state import NodeEntry

REFRESH_SECONDS = 15


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


# One per-node section, bound to the page: the nodes it is to draw → its HTML.
NodeSection = Callable[[tuple[NodeEntry, ...]], str]


def _per_node_sections(
    data: Published, sections: list[NodeSection]
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


def render_status_page(data: Published, sections: tuple[Section, ...] = PAGE) -> str:
    """The whole page as one string; every agent-supplied value is escaped."""
    kube_nodes = {k.name: k for k in data.kube.nodes} if data.kube.available else {}
    agent_names = {n.name for n in data.state.nodes}
    without_agent = tuple(k for name, k in kube_nodes.items() if name not in agent_names)
    page = Page(data, kube_nodes, without_agent)

    def bound(section: Section) -> NodeSection:
        return lambda nodes: section.render(page, nodes)

    node_html, unusable = _per_node_sections(data, [bound(s) for s in sections if s.per_node])
    parts: list[str] = [
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>Preflight — {esc(data.profile_name)}</title>",
        f"<style>{STYLE}</style></head><body>",
    ]
    parts.append(_header(data, len(without_agent), sections))
    # Sections drawn from verdicts alone come first, over every node.
    parts.extend(s.render(page, data.state.nodes) for s in sections if not s.per_node)
    parts.append(_unusable(data, unusable))
    parts.extend(node_html)
    parts.append("</body></html>\n")
    return "".join(parts)


def _header(data: Published, missing: int, sections: tuple[Section, ...]) -> str:
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
    links = "".join(f'<a href="#{s.anchor}">{esc(s.nav)}</a>' for s in sections if s.nav)
    return (
        "<h1>Preflight — Run:AI cluster prerequisites</h1>"
        f'<p class="meta">profile <b>{esc(data.profile_name)}</b> · {counts} · {kube} · '
        f"generated {iso(data.state.taken_at)} · refreshes every {REFRESH_SECONDS}s</p>"
        f'<nav>{links}<a href="/api/v1/verdicts">JSON</a>'
        '<a href="/metrics">metrics</a></nav>'
    )
