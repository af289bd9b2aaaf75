"""The shared_volume rule (collector/rules/shared_volume.py) as on main, kept as the reference.

A property test (tests/collector/test_rules_reference.py) checks that the collector's
fast paths give the same verdicts as this, reasons and evidence included, for random
reports and histories. Not used by the collector.

Original module docstring follows.

shared_volume: the NAS is mounted on every node and is the same volume everywhere.

Proof of sharing comes from marker files: each agent writes a fresh nonce under
<path>/.preflight/nodes/ and reads a sample of its peers'. Nodes that read each
other's fresh markers are on one volume; the rule joins them into groups. More
than one group means the path is backed by different volumes on different nodes.
Where markers prove sharing across nodes, that proof outweighs the filesystem
type; where they cannot (one node, or writes not expected), a local filesystem fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from sys import intern

from collector.rules.model import Evidence, Verdict, count, names
from preflight.enums import MOUNT_STATES, WRITE_CHECKS
from preflight.v1 import report_pb2 as pb
from tests.support.memo_reference import PerReport

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


@dataclass(frozen=True, slots=True)
class _Mount:
    """What the rule reads of one mount result (derived once per report, see memo)."""

    state: str
    message: str
    network_filesystem: bool
    fs_type: str
    source: str
    write_check: str
    write_latency_seconds: float
    writes_marker: bool
    # (peer node name, when it wrote the marker seen, Unix seconds)
    peers: tuple[tuple[str, float], ...]


def _mounts_of(report: pb.NodeReport) -> dict[str, _Mount]:
    found: dict[str, _Mount] = {}
    for m in report.mounts:
        if m.path in found:
            continue  # the first result for a path counts (validation refuses duplicates)
        found[intern(m.path)] = _Mount(
            state=MOUNT_STATES.name(m.state),
            message=m.message,
            network_filesystem=m.network_filesystem,
            # Interned: the same on every node of a healthy cluster, kept once.
            fs_type=intern(m.fs_type),
            source=intern(m.source),
            write_check=WRITE_CHECKS.name(m.write_check),
            write_latency_seconds=m.write_latency_seconds,
            writes_marker=bool(m.marker.nonce),
            peers=tuple((p.node_name, p.written_at.ToNanoseconds() / 1e9) for p in m.marker.peers),
        )
    return found


_MOUNTS = PerReport(_mounts_of)
NodeMounts = list[tuple[str, dict[str, _Mount]]]


def _judge_path(view: Evidence, path: str, nodes: NodeMounts) -> PathFindings:
    found = PathFindings()
    mounts: dict[str, _Mount] = {}
    for name, of_node in nodes:
        mount = of_node.get(path)
        state = mount.state if mount else "not reported"
        if mount is None or state in ("missing", "not_mounted", "error", "unknown", "not reported"):
            detail = f": {mount.message}" if mount and mount.message else ""
            found.failures.append(f"{name}: {state}{detail}")
            found.nodes.add(name)
        elif state == "stuck":
            found.failures.append(f"{name}: stuck ({mount.message or 'not answering'})")
            found.nodes.add(name)
        else:
            mounts[name] = mount
    max_age = view.profile.shared_volume.marker_max_age
    now = view.now
    edges: dict[str, set[str]] = {}
    stale_only: list[str] = []
    for name, mount in mounts.items():
        fresh = {
            peer for peer, written in mount.peers if now - written <= max_age and peer in mounts
        }
        edges[name] = fresh
        if not fresh and mount.peers:
            stale_only.append(name)
    writers = {n for n, m in mounts.items() if m.writes_marker}
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
        check = mount.write_check
        if check == "failed":
            found.warnings.append(f"{name}: not writable ({mount.message or 'write failed'})")
            found.nodes.add(name)
        elif check == "ok" and mount.write_latency_seconds > SLOW_WRITE_SECONDS:
            found.warnings.append(f"{name}: slow writes ({mount.write_latency_seconds:.1f}s)")
            found.nodes.add(name)
    return found


def evaluate(view: Evidence) -> Verdict:
    nodes = view.live_nodes
    of_nodes = list(zip((n.name for n in nodes), _MOUNTS(nodes), strict=True))
    paths = list(view.profile.shared_volume.paths) or sorted(
        {path for _, mounts in of_nodes for path in mounts}
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
        found = _judge_path(view, path, of_nodes)
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
