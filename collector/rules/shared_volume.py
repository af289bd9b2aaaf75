"""shared_volume: the NAS is mounted on every node and is the same volume everywhere.

Proof of sharing comes from marker files: each agent writes a fresh nonce under
<path>/.preflight/nodes/ and reads a sample of its peers'. Nodes that read each
other's fresh markers are on one volume; the rule joins them into groups. More
than one group means the path is backed by different volumes on different nodes.
Where markers prove sharing across nodes, that proof outweighs the filesystem
type; where they cannot (one node, or writes not expected), a local filesystem fails.

Every report carries new marker times, so what the rule reads of a report is kept in
two parts (collector.rules.memo): the mount as such, the same from heartbeat to
heartbeat, and the peers' marker times, which only decide which peers are fresh now.
Freshness is a comparison per marker that turns from fresh to stale once as time goes
on; the fresh sets of the last judging are kept with the oldest fresh marker, and are
taken again while that one is still fresh (then every other is too). With the same
mounts and the same fresh sets, the verdict is the last one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import compress
from operator import is_not, itemgetter
from sys import intern

from collector.rules.memo import LastVerdict, PerReport
from collector.rules.model import Evidence, Verdict, count, names
from preflight.enums import MOUNT_STATES, WRITE_CHECKS
from preflight.profile import SharedVolumeRule
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


@dataclass(frozen=True, slots=True)
class _Mount:
    """What the rule reads of one mount result but its marker times (see module)."""

    state: str
    message: str
    network_filesystem: bool
    fs_type: str
    source: str
    write_check: str
    # The write round-trip where it was slow (the write check ok), else 0: the latency
    # of every other write is never read, and differs from report to report.
    slow_write_seconds: float
    writes_marker: bool
    sees_peers: bool  # the agent read at least one peer's marker


# A node's markers read, per path: (peer node name, when it wrote the marker seen, Unix s)
Peers = tuple[tuple[str, float], ...]


def _first_per_path(report: pb.NodeReport) -> dict[str, pb.MountResult]:
    found: dict[str, pb.MountResult] = {}
    for m in report.mounts:
        # The first result for a path counts (validation refuses duplicates).
        found.setdefault(intern(m.path), m)
    return found


def _mounts_of(report: pb.NodeReport) -> tuple[dict[str, _Mount], dict[str, Peers]]:
    """Per path: the mount, and the peers' markers it read (one pass, one decode)."""
    mounts: dict[str, _Mount] = {}
    peers: dict[str, Peers] = {}
    for path, m in _first_per_path(report).items():
        write_check = WRITE_CHECKS.name(m.write_check)
        latency = m.write_latency_seconds
        seen = m.marker.peers
        mounts[path] = _Mount(
            state=MOUNT_STATES.name(m.state),
            message=m.message,
            network_filesystem=m.network_filesystem,
            # Interned: the same on every node of a healthy cluster, kept once.
            fs_type=intern(m.fs_type),
            source=intern(m.source),
            write_check=write_check,
            slow_write_seconds=latency
            if write_check == "ok" and latency > SLOW_WRITE_SECONDS
            else 0.0,
            writes_marker=bool(m.marker.nonce),
            sees_peers=bool(seen),
        )
        peers[path] = tuple((p.node_name, p.written_at.ToNanoseconds() / 1e9) for p in seen)
    return mounts, peers


# Both parts in one cache: a new report is decoded and walked once. The parts are
# compared apart: the mounts (by value where the report is new) decide whether the
# verdict can be the last one, the peers' objects whether fresh sets need computing.
_MOUNTS = PerReport(_mounts_of)
_mounts_part, _peers_part = itemgetter(0), itemgetter(1)
# Per path: the peers whose marker this node read fresh (not yet filtered to the nodes
# that have the path mounted: that is the cluster's part, judged per path).
Fresh = dict[str, frozenset[str]]
NodeMounts = list[tuple[str, dict[str, _Mount], Fresh]]


def _fresh_of(peers: dict[str, Peers], now: float, max_age: float) -> tuple[Fresh, float]:
    """The fresh peers per path, and the oldest fresh marker's time (inf: none fresh)."""
    fresh: Fresh = {}
    oldest = math.inf
    for path, seen in peers.items():
        kept = []
        for peer, written in seen:
            if now - written <= max_age:
                kept.append(peer)
                oldest = min(oldest, written)
        fresh[path] = frozenset(kept)
    return fresh, oldest


@dataclass(frozen=True)
class _Freshness:
    """The fresh sets of one judging, and what they are valid for."""

    now: float
    max_age: float
    names: list[str]
    peers: list[dict[str, Peers]]
    fresh: list[Fresh]
    # The oldest fresh marker among them (or a time before it): while it is fresh, so is
    # every marker fresh then, and no stale one turns fresh while time does not go back.
    oldest: float


class _FreshSets:
    """Each node's fresh sets as of `now`, computed again only where they may differ."""

    def __init__(self) -> None:
        self._last: _Freshness | None = None
        self.computed = 0  # nodes whose fresh sets were computed (tests read it)

    def __call__(
        self, names: list[str], peers: list[dict[str, Peers]], now: float, max_age: float
    ) -> list[Fresh]:
        last = self._last
        if (
            last is not None
            and last.max_age == max_age
            and now >= last.now
            and (last.oldest == math.inf or now - last.oldest <= max_age)
            and names == last.names
        ):
            fresh, oldest = last.fresh.copy(), last.oldest
            changed = list(compress(range(len(peers)), map(is_not, peers, last.peers)))
        else:
            fresh, oldest = [{} for _ in peers], math.inf
            changed = list(range(len(peers)))
        for i in changed:
            sets, since = _fresh_of(peers[i], now, max_age)
            if sets != fresh[i]:
                fresh[i] = sets
            oldest = min(oldest, since)
        self.computed += len(changed)
        self._last = _Freshness(now, max_age, names, peers, fresh, oldest)
        return fresh


_FRESH = _FreshSets()
_LAST = LastVerdict()


def _judge_path(path: str, nodes: NodeMounts) -> PathFindings:
    found = PathFindings()
    mounts: dict[str, _Mount] = {}
    fresh_of: dict[str, frozenset[str]] = {}
    for name, of_node, fresh in nodes:
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
            fresh_of[name] = fresh[path]
    edges: dict[str, set[str]] = {}
    stale_only: list[str] = []
    for name, mount in mounts.items():
        seen = {peer for peer in fresh_of[name] if peer in mounts}
        edges[name] = seen
        if not seen and mount.sees_peers:
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
        elif mount.slow_write_seconds:
            found.warnings.append(f"{name}: slow writes ({mount.slow_write_seconds:.1f}s)")
            found.nodes.add(name)
    return found


def evaluate(view: Evidence) -> Verdict:
    nodes = view.live_nodes
    if not nodes:
        return Verdict(REQUIREMENT, "unknown", "no agent has reported recently")
    rule = view.profile.shared_volume
    node_names, facts = _MOUNTS.named(nodes)
    mounts = list(map(_mounts_part, facts))
    fresh = _FRESH(node_names, list(map(_peers_part, facts)), view.now, rule.marker_max_age)
    # view.now is read only through the fresh sets.
    return _LAST((rule, node_names, mounts, fresh), lambda: _judge(rule, node_names, mounts, fresh))


def _judge(
    rule: SharedVolumeRule,
    node_names: list[str],
    mounts: list[dict[str, _Mount]],
    fresh: list[Fresh],
) -> Verdict:
    of_nodes = list(zip(node_names, mounts, fresh, strict=True))
    paths = list(rule.paths) or sorted({path for _, of_node, _ in of_nodes for path in of_node})
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
        found = _judge_path(path, of_nodes)
        failures += [f"{path}: {f}" for f in found.failures]
        warnings += [f"{path}: {w}" for w in found.warnings]
        involved |= found.nodes
    if failures:
        return Verdict(REQUIREMENT, "fail", names(failures, 3), nodes=tuple(sorted(involved)))
    if warnings:
        return Verdict(REQUIREMENT, "warn", names(warnings, 3), nodes=tuple(sorted(involved)))
    proof = (
        "each sees its peers' markers" if len(of_nodes) > 1 else "one node: sharing not provable"
    )
    return Verdict(
        REQUIREMENT,
        "pass",
        f"{', '.join(paths)} mounted on every node ({count(len(of_nodes), 'node')}); {proof}",
    )
