"""shared_volume: the NAS is mounted on every node and is the same volume everywhere.

Proof of sharing comes from marker files: each agent writes a fresh nonce under
<path>/.preflight/nodes/ and reads a sample of its peers'. Nodes that read each
other's fresh markers are on one volume; the rule joins them into groups. More
than one group means the path is backed by different volumes on different nodes.
Where markers prove sharing across nodes, that proof outweighs the filesystem
type; where they cannot (one node, or writes not expected), a local filesystem fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from collector.rules.model import Evidence, Verdict, count, names
from collector.state import NodeEntry
from preflight.enums import MOUNT_STATES, WRITE_CHECKS
from preflight.v1 import report_pb2 as pb

REQUIREMENT = "shared_volume"
# A write round-trip slower than this is worth a warning on a NAS.
SLOW_WRITE_SECONDS = 1.0


@dataclass
class PathFindings:
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    nodes: set[str] = field(default_factory=set)


def _groups(edges: dict[str, set[str]], members: list[str]) -> list[list[str]]:
    """Connected components of the 'read a fresh marker of' relation."""
    parent = {m: m for m in members}

    def root(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for node, peers in edges.items():
        for peer in peers:
            if peer in parent:
                parent[root(node)] = root(peer)
    components: dict[str, list[str]] = {}
    for m in members:
        components.setdefault(root(m), []).append(m)
    return sorted((sorted(c) for c in components.values()), key=lambda c: (-len(c), c))


def _judge_path(view: Evidence, path: str, nodes: tuple[NodeEntry, ...]) -> PathFindings:
    found = PathFindings()
    mounts: dict[str, pb.MountResult] = {}
    for node in nodes:
        mount = next((m for m in node.report.mounts if m.path == path), None)
        state = MOUNT_STATES.name(mount.state) if mount else "not reported"
        if mount is None or state in ("missing", "not_mounted", "error", "unknown", "not reported"):
            detail = f": {mount.message}" if mount and mount.message else ""
            found.failures.append(f"{node.name}: {state}{detail}")
            found.nodes.add(node.name)
        elif state == "stuck":
            found.failures.append(f"{node.name}: stuck ({mount.message or 'not answering'})")
            found.nodes.add(node.name)
        else:
            mounts[node.name] = mount
    max_age = view.profile.shared_volume.marker_max_age
    edges: dict[str, set[str]] = {}
    stale_only: list[str] = []
    for name, mount in mounts.items():
        fresh = {
            p.node_name
            for p in mount.marker.peers
            if view.now - p.written_at.ToNanoseconds() / 1e9 <= max_age and p.node_name in mounts
        }
        edges[name] = fresh
        if not fresh and mount.marker.peers:
            stale_only.append(name)
    writers = {n for n, m in mounts.items() if m.marker.nonce}
    # Markers can prove sharing only where someone writes them and there are peers.
    markers_in_use = bool(writers) and len(mounts) >= 2
    proven: set[str] = set()
    if markers_in_use:
        groups = _groups(edges, sorted(mounts))
        proven = {n for g in groups if len(g) > 1 for n in g}
        if len(groups) > 1:
            shown = "; ".join("{" + ", ".join(g) + "}" for g in groups[:4])
            found.failures.append(f"not the same volume: nodes split into groups {shown}")
            found.nodes.update(mounts)
        else:
            # One volume, yet a node missed markers that others wrote on it (caching?).
            blind = sorted(
                n for n in mounts if not edges[n] and n not in stale_only and writers - {n}
            )
            if blind:
                found.failures.append(f"sees no peer marker: {names(blind)}")
                found.nodes.update(blind)
        if stale_only:
            found.failures.append(f"sees only stale peer markers: {names(sorted(stale_only))}")
            found.nodes.update(stale_only)
    # Without marker proof, fall back to what the mount table says.
    local = sorted(n for n, m in mounts.items() if not m.network_filesystem and n not in proven)
    if local:
        described = [f"{n} ({mounts[n].fs_type})" for n in local]
        found.failures.append(f"local filesystem, not a NAS, on {names(described)}")
        found.nodes.update(local)
    sources = {m.source for m in mounts.values()}
    if len(sources) > 1 and not markers_in_use:
        found.failures.append(f"different sources: {names(sorted(sources))}")
        found.nodes.update(mounts)
    for name, mount in mounts.items():
        check = WRITE_CHECKS.name(mount.write_check)
        if check == "failed":
            found.warnings.append(f"{name}: not writable ({mount.message or 'write failed'})")
            found.nodes.add(name)
        elif check == "ok" and mount.write_latency_seconds > SLOW_WRITE_SECONDS:
            found.warnings.append(f"{name}: slow writes ({mount.write_latency_seconds:.1f}s)")
            found.nodes.add(name)
    return found


def evaluate(view: Evidence) -> Verdict:
    nodes = view.live_nodes
    paths = list(view.profile.shared_volume.paths) or sorted(
        {m.path for n in nodes for m in n.report.mounts}
    )
    if not nodes:
        return Verdict(REQUIREMENT, "unknown", "no agent has reported recently")
    if not paths:
        return Verdict(
            REQUIREMENT,
            "unknown",
            "no shared volume configured (profile shared_volume.paths and agent "
            "mounts.volumes are empty)",
        )
    failures: list[str] = []
    warnings: list[str] = []
    involved: set[str] = set()
    for path in paths:
        found = _judge_path(view, path, nodes)
        failures += [f"{path}: {f}" for f in found.failures]
        warnings += [f"{path}: {w}" for w in found.warnings]
        involved |= found.nodes
    if failures:
        return Verdict(REQUIREMENT, "fail", names(failures, 3), nodes=tuple(sorted(involved)))
    if warnings:
        return Verdict(REQUIREMENT, "warn", names(warnings, 3), nodes=tuple(sorted(involved)))
    proof = "each sees its peers' markers" if len(nodes) > 1 else "one node: sharing not provable"
    return Verdict(
        REQUIREMENT,
        "pass",
        f"{', '.join(paths)} mounted on every node ({count(len(nodes), 'node')}); {proof}",
    )
