"""Concern `mounts`: the shared volume as each node sees it.

/metrics: mounted, writable, stuck, peer markers visible, per node and path. Page: the
Shared volume table (state, filesystem, source, the write round-trip, peers seen).
"""

from __future__ import annotations

from collections.abc import Iterator

from collector.concerns.base import Concern, Page, Sample, Section, gauge
from collector.concerns.html import DASH, esc, millis, node_label, stale_class
from collector.state import NodeEntry
from preflight.enums import MOUNT_STATES, WRITE_CHECKS
from preflight.v1 import report_pb2 as pb

_NP = ("node", "path")

MOUNT_UP = gauge("preflight_mount_up", "1 when a filesystem is mounted at the path.", _NP, True)
MOUNT_WRITABLE = gauge(
    "preflight_mount_writable", "1 when the write round-trip succeeded.", _NP, True
)
MOUNT_STUCK = gauge("preflight_mount_stuck", "1 while a call on the path is blocked.", _NP, True)
MOUNT_PEERS = gauge("preflight_mount_peers_visible", "Peer markers visible on the path.", _NP, True)


def node_samples(
    node: NodeEntry, allocatable_gpus: int | None, expected_plan: str | None
) -> Iterator[Sample]:
    name = node.name
    for m in node.report.mounts:
        key = (name, m.path)
        state = MOUNT_STATES.name(m.state)
        yield MOUNT_UP, key, 1.0 if state == "mounted" else 0.0
        yield MOUNT_WRITABLE, key, 1.0 if WRITE_CHECKS.name(m.write_check) == "ok" else 0.0
        yield MOUNT_STUCK, key, 1.0 if state == "stuck" else 0.0
        yield MOUNT_PEERS, key, float(len(m.marker.peers))


def _writable(m: pb.MountResult) -> str:
    check = WRITE_CHECKS.name(m.write_check)
    if check == "ok":
        return f'<span class="good">yes</span> <small>{millis(m.write_latency_seconds)}</small>'
    if check == "failed":
        return '<span class="bad">NO</span>'
    if check == "not_expected":
        return "not checked (read-only)" if m.read_only else "not checked"
    return DASH


def shared_volume(page: Page, nodes: tuple[NodeEntry, ...]) -> str:
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
                f'<tr{stale_class(node)} data-node="{name}">'
                f'<th class="node">{node_label(node)}</th><td>{esc(m.path)}</td>'
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


SHARED_VOLUME = Section("mounts", shared_volume, nav="shared volume")

CONCERN = Concern(
    name="mounts",
    families=(MOUNT_UP, MOUNT_WRITABLE, MOUNT_STUCK, MOUNT_PEERS),
    node_samples=node_samples,
    sections=(SHARED_VOLUME,),
)
