"""HTML pieces every status-page section shares: escaping, times, numbers, node labels.

Agents are untrusted: every string that came from a report goes through `esc` before it
touches the markup, in text and in attributes alike.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import UTC, datetime

from collector.state import NodeEntry

GIB = 1024**3
# How many node or target names a requirement row lists before "and N more".
LIST_LIMIT = 8
DASH = '<span class="muted">—</span>'


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


def stale_class(node: NodeEntry) -> str:
    """The row attribute that greys out a node whose agent went quiet."""
    return "" if node.up else ' class="stale"'


def node_label(node: NodeEntry) -> str:
    label = esc(node.name)
    return label if node.up else f'{label}<span class="tag">stale</span>'
