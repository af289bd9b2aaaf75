"""The status page at `/`: server-rendered HTML, no external assets, everything escaped."""

from __future__ import annotations

import html

from collector.view import CollectorView


def render_status_page(data: CollectorView) -> str:
    """A plain server-rendered page; every agent-supplied string is escaped."""
    esc = html.escape
    now = data.state.taken_at
    ready = "".join(
        f'<span class="{"ok" if ok else "bad"}">{esc(phase)}: {"ready" if ok else "NOT ready"}'
        "</span> "
        for phase, ok in data.ready
    )
    rows = "".join(
        f'<tr class="{esc(v.status)}"><td>{esc(v.requirement)}</td><td>{esc(v.status)}</td>'
        f"<td>{esc(v.reason)}</td></tr>"
        for v in data.verdicts
    )
    nodes = "".join(
        f"<tr><td>{esc(n.name)}</td><td>{'up' if n.up else 'SILENT'}</td>"
        f"<td>{now - n.received_at:.0f}s</td></tr>"
        for n in data.state.nodes
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="15">
<title>Preflight</title>
<style>body{{font-family:sans-serif}} .ok{{color:#080}} .bad,.fail td{{color:#b00}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 6px}}</style>
</head><body>
<h1>Preflight</h1>
<p id="readiness">{ready}</p>
<h2>Requirements</h2>
<table id="requirements"><tr><th>requirement</th><th>status</th><th>reason</th></tr>{rows}</table>
<h2>Nodes</h2>
<table id="nodes"><tr><th>node</th><th>agent</th><th>last report</th></tr>{nodes}</table>
</body></html>"""
