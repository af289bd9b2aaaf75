"""Table tests of the shared_volume rule (collector.rules.shared_volume.evaluate).

Each row builds an Evidence from NodeReport protobufs the way the collector holds
them after ingest, with the shipped runai-2020 profile (marker_max_age 5 minutes), and
states the verdict an operator should see: status, words the reason must contain and
exactly which nodes the verdict names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from collector.rules import shared_volume
from collector.rules.model import Evidence, Status
from collector.state import AgentReports, NodeEntry
from preflight.profile import Profile, load_profile
from preflight.v1 import report_pb2 as pb

NOW = 1_700_000_000.0
PATH = "/mnt/nas"
FRESH = 10.0  # seconds old: well inside marker_max_age
STALE = 3600.0  # an hour old: far beyond marker_max_age (5m)

PROFILE = load_profile("runai-2020")


@dataclass(frozen=True)
class Mount:
    """One node's MountResult for PATH, in the few words a table row needs."""

    state: int = pb.MOUNT_STATE_MOUNTED
    fs_type: str = "nfs4"
    source: str = "nas:/export"
    network: bool = True
    write: int = pb.WRITE_CHECK_OK
    latency: float = 0.02
    nonce: bool = True  # wrote its own marker this cycle
    # Peer node → age in seconds of the marker this node read from it.
    peers: dict[str, float] = field(default_factory=dict)
    message: str = ""
    path: str = PATH


def local(**kw: object) -> Mount:
    """A bind-mounted local directory (what the e2e 'nodes' use)."""
    return Mount(fs_type="ext4", source="/dev/sda1", network=False, **kw)  # type: ignore[arg-type]


def mount_result(m: Mount) -> pb.MountResult:
    result = pb.MountResult(
        path=m.path,
        state=m.state,  # type: ignore[arg-type]
        fs_type=m.fs_type,
        source=m.source,
        network_filesystem=m.network,
        write_check=m.write,  # type: ignore[arg-type]
        write_latency_seconds=m.latency,
        message=m.message,
    )
    if m.nonce:
        result.marker.nonce = "n" * 32
        result.marker.written_at.FromNanoseconds(int((NOW - 1) * 1e9))
    for peer, age in sorted(m.peers.items()):
        p = result.marker.peers.add(node_name=peer, nonce="p" * 32)
        p.written_at.FromNanoseconds(int((NOW - age) * 1e9))
    result.marker.markers_seen = len(m.peers)
    return result


def entry(name: str, *mounts: Mount, up: bool = True) -> NodeEntry:
    report = pb.NodeReport(node_name=name, instance_id=f"i-{name}", sequence=1)
    report.mounts.extend(mount_result(m) for m in mounts)
    return NodeEntry.of(
        report,
        received_at=NOW - 1,
        clock_skew_seconds=0.0,
        first_seen=NOW - 100,
        up=up,
    )


def view(nodes: list[NodeEntry], profile: Profile = PROFILE) -> Evidence:
    state = AgentReports(
        taken_at=NOW,
        nodes=tuple(sorted(nodes, key=lambda n: n.name)),
        stale_after_seconds=90.0,
        heartbeat_interval=30.0,
        reports_received=len(nodes),
        rejected=(),
        version=1,
    )
    return Evidence(state=state, profile=profile, now=NOW)


def pair(a: Mount, b: Mount) -> list[NodeEntry]:
    return [entry("node-a", a), entry("node-b", b)]


@dataclass(frozen=True)
class Case:
    id: str
    nodes: list[NodeEntry]
    status: Status
    reason: tuple[str, ...] = ()  # substrings the reason must contain
    named: tuple[str, ...] = ()  # exactly the verdict's nodes
    not_in_reason: tuple[str, ...] = ()


CASES = [
    Case("no nodes", [], "unknown", ("no agent has reported",)),
    Case(
        "only stale agents",
        [entry("node-a", Mount(), up=False)],
        "unknown",
        ("no agent has reported",),
    ),
    Case(
        "no volumes configured",
        [entry("node-a"), entry("node-b")],
        "unknown",
        ("no shared volume configured", "shared_volume.paths", "mounts.volumes"),
    ),
    Case(
        "one node on NFS",
        [entry("node-a", Mount())],
        "pass",
        (PATH, "mounted on every node (1 node)", "sharing not provable"),
    ),
    Case(
        "one node on ext4",
        [entry("node-a", local())],
        "fail",
        ("local filesystem, not a NAS", "node-a (ext4)"),
        ("node-a",),
    ),
    Case(
        "two NFS nodes see each other's fresh markers",
        pair(Mount(peers={"node-b": FRESH}), Mount(peers={"node-a": FRESH})),
        "pass",
        ("mounted on every node (2 nodes)", "each sees its peers' markers"),
    ),
    Case(
        # Marker proof outweighs the filesystem type: the e2e bind mount is this case.
        "two local bind mounts proven shared by markers",
        pair(local(peers={"node-b": FRESH}), local(peers={"node-a": FRESH})),
        "pass",
        ("each sees its peers' markers",),
    ),
    Case(
        # One direction is enough to join a and b into one group; both read c.
        "three nodes joined through one-way reads",
        [
            entry("node-a", Mount(peers={"node-c": FRESH})),
            entry("node-b", Mount(peers={"node-c": FRESH})),
            entry("node-c", Mount(peers={"node-a": FRESH})),
        ],
        "pass",
        ("mounted on every node (3 nodes)",),
    ),
    Case(
        "different sources proven shared by markers",
        pair(
            Mount(source="10.0.0.1:/export", peers={"node-b": FRESH}),
            Mount(source="nas.example:/export", peers={"node-a": FRESH}),
        ),
        "pass",
    ),
    Case(
        "two groups {a,b} {c,d}",
        [
            entry("node-a", Mount(peers={"node-b": FRESH})),
            entry("node-b", Mount(peers={"node-a": FRESH})),
            entry("node-c", Mount(peers={"node-d": FRESH})),
            entry("node-d", Mount(peers={"node-c": FRESH})),
        ],
        "fail",
        ("not the same volume", "{node-a, node-b}", "{node-c, node-d}"),
        ("node-a", "node-b", "node-c", "node-d"),
    ),
    Case(
        # The e2e private-tmpfs case: each wrote a marker, none sees another.
        "two private volumes, each sees nothing",
        pair(local(), local()),
        "fail",
        ("not the same volume", "{node-a}", "{node-b}"),
        ("node-a", "node-b"),
    ),
    Case(
        # b's marker is read by a (b writes to the volume) but b only reads an old copy.
        "a node seeing only stale markers",
        pair(Mount(peers={"node-b": FRESH}), Mount(peers={"node-a": STALE})),
        "fail",
        ("sees only stale peer markers: node-b",),
        ("node-b",),
        ("not the same volume",),
    ),
    Case(
        # c reads only a marker left long ago and nobody reads c: split and stale, both c.
        "an isolated node seeing only stale markers",
        [
            entry("node-a", Mount(peers={"node-b": FRESH})),
            entry("node-b", Mount(peers={"node-a": FRESH})),
            entry("node-c", Mount(peers={"node-a": STALE})),
        ],
        "fail",
        ("not the same volume", "{node-c}", "sees only stale peer markers: node-c"),
        ("node-a", "node-b", "node-c"),
    ),
    Case(
        "a node seeing no peer marker while others see it",
        pair(Mount(peers={"node-b": FRESH}), Mount()),
        "fail",
        ("sees no peer marker: node-b",),
        ("node-b",),
    ),
    Case(
        "a fresh marker of a node that has no live report does not prove sharing",
        pair(Mount(peers={"node-gone": FRESH}), Mount(peers={"node-gone": FRESH})),
        "fail",
        ("not the same volume",),
        ("node-a", "node-b"),
    ),
    Case(
        "a node missing the mount",
        pair(Mount(), Mount(state=pb.MOUNT_STATE_MISSING, message="No such file or directory")),
        "fail",
        ("node-b: missing", "No such file or directory"),
        ("node-b",),
    ),
    Case(
        "a node where the path is not a mount point",
        pair(Mount(), Mount(state=pb.MOUNT_STATE_NOT_MOUNTED)),
        "fail",
        ("node-b: not_mounted",),
        ("node-b",),
    ),
    Case(
        "a node that does not report the path",
        [entry("node-a", Mount()), entry("node-b", Mount(path="/elsewhere"))],
        "fail",
        ("/mnt/nas: node-b: not reported", "/elsewhere: node-a: not reported"),
        ("node-a", "node-b"),
    ),
    Case(
        "a stuck mount",
        pair(
            Mount(),
            Mount(state=pb.MOUNT_STATE_STUCK, message="statvfs blocked for 5.0s", nonce=False),
        ),
        "fail",
        ("node-b: stuck (statvfs blocked for 5.0s)",),
        ("node-b",),
    ),
    Case(
        "a mount whose write failed",
        pair(
            Mount(),
            Mount(
                write=pb.WRITE_CHECK_FAILED,
                message="Read-only file system",
                nonce=False,
                peers={"node-a": FRESH},  # it still reads the peers' markers
            ),
        ),
        "warn",
        ("node-b: not writable (Read-only file system)",),
        ("node-b",),
    ),
    Case(
        "a slow write",
        pair(
            Mount(peers={"node-b": FRESH}),
            Mount(latency=2.5, peers={"node-a": FRESH}),
        ),
        "warn",
        ("node-b: slow writes (2.5s)",),
        ("node-b",),
    ),
    Case(
        "a write just under the slow threshold",
        pair(
            Mount(peers={"node-b": FRESH}),
            Mount(latency=0.9, peers={"node-a": FRESH}),
        ),
        "pass",
    ),
    Case(
        "different sources without markers",
        pair(
            Mount(source="nas1:/export", write=pb.WRITE_CHECK_NOT_EXPECTED, nonce=False),
            Mount(source="nas2:/export", write=pb.WRITE_CHECK_NOT_EXPECTED, nonce=False),
        ),
        "fail",
        ("different sources", "nas1:/export", "nas2:/export"),
        ("node-a", "node-b"),
    ),
    Case(
        "same NFS source without markers",
        pair(
            Mount(write=pb.WRITE_CHECK_NOT_EXPECTED, nonce=False),
            Mount(write=pb.WRITE_CHECK_NOT_EXPECTED, nonce=False),
        ),
        "pass",
    ),
    Case(
        "local filesystem without markers",
        pair(
            local(write=pb.WRITE_CHECK_NOT_EXPECTED, nonce=False),
            Mount(write=pb.WRITE_CHECK_NOT_EXPECTED, nonce=False),
        ),
        "fail",
        ("local filesystem, not a NAS, on node-a (ext4)",),
        ("node-a", "node-b"),  # the sources differ too
    ),
    Case(
        "failure outranks warning",
        pair(Mount(state=pb.MOUNT_STATE_MISSING), Mount(latency=3.0)),
        "fail",
        ("node-a: missing",),
        ("node-a", "node-b"),
        ("slow writes",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_shared_volume_table(case: Case) -> None:
    verdict = shared_volume.evaluate(view(case.nodes))
    assert verdict.requirement == "shared_volume"
    assert verdict.status == case.status, verdict.reason
    for words in case.reason:
        assert words in verdict.reason, verdict.reason
    for words in case.not_in_reason:
        assert words not in verdict.reason, verdict.reason
    assert verdict.nodes == case.named, verdict.reason


def test_marker_age_limit_comes_from_the_profile() -> None:
    """The same reads are fresh or stale depending on the profile's marker_max_age."""
    nodes = pair(Mount(peers={"node-b": 120.0}), Mount(peers={"node-a": 120.0}))
    assert shared_volume.evaluate(view(nodes)).status == "pass"
    strict = PROFILE.replace(shared_volume=PROFILE.shared_volume.replace(marker_max_age=60.0))
    verdict = shared_volume.evaluate(view(nodes, strict))
    assert verdict.status == "fail"
    assert "sees only stale peer markers: node-a, node-b" in verdict.reason


def test_profile_paths_are_checked_even_when_no_node_reports_them() -> None:
    profile = PROFILE.replace(shared_volume=PROFILE.shared_volume.replace(paths=("/data",)))
    verdict = shared_volume.evaluate(view([entry("node-a", Mount())], profile))
    assert verdict.status == "fail"
    assert "/data: node-a: not reported" in verdict.reason
    assert verdict.nodes == ("node-a",)


def test_many_groups_keep_the_reason_short() -> None:
    """Ten isolated nodes: the reason shows a bounded number of groups, every node is named."""
    nodes = [entry(f"node-{i:02d}", Mount()) for i in range(10)]
    verdict = shared_volume.evaluate(view(nodes))
    assert verdict.status == "fail"
    assert "not the same volume" in verdict.reason
    assert verdict.reason.count("{") <= 4
    assert verdict.nodes == tuple(f"node-{i:02d}" for i in range(10))


def test_node_without_marker_on_a_different_export_fails() -> None:
    nodes = [
        entry("node-a", Mount(peers={"node-b": FRESH})),
        entry("node-b", Mount(peers={"node-a": FRESH})),
        # c mounts another NFS export read-only-by-config: it writes no marker and
        # reads none of a's or b's, which it would if it were the same volume.
        entry(
            "node-c",
            Mount(source="other:/export", write=pb.WRITE_CHECK_NOT_EXPECTED, nonce=False),
        ),
    ]
    verdict = shared_volume.evaluate(view(nodes))
    assert verdict.status == "fail", verdict.reason
    assert "node-c" in verdict.nodes


def test_local_filesystem_fallback_names_only_unproven_nodes() -> None:
    nodes = [
        entry("node-a", local(peers={"node-b": FRESH})),
        entry("node-b", local(peers={"node-a": FRESH})),
        entry("node-c", local(write=pb.WRITE_CHECK_FAILED, message="Read-only", nonce=False)),
    ]
    verdict = shared_volume.evaluate(view(nodes))
    assert verdict.status == "fail", verdict.reason
    assert "node-c (ext4)" in verdict.reason
    assert "node-a (ext4)" not in verdict.reason and "node-b (ext4)" not in verdict.reason
