"""The rules' fast paths judge exactly as the code before them (tests/support/*_reference.py).

shared_volume, egress_install / egress_runtime, gpu_nodes and clock_sync keep their last
verdict while what they read is the same, and per node what a re-derived report says
when it says what the last one did (collector/rules/memo.py); shared_volume keeps its
fresh marker sets while they cannot have changed; agent_coverage looks for late nodes
only when the oldest report is late; kubernetes_version, container_runtime,
system_nodes and gpu_operator keep their verdict while the Kubernetes nodes (and the
agents' sizes) are the same, and the sizes' dict is kept while no report came.
Property: over random histories of reports, heartbeats (the same content at a new
time), nodes going stale and leaving, the clock moving (across marker_max_age, by tiny
steps, and back), profiles, Kubernetes views and mirrors changing, and isolation-style
judgings of part of the nodes between, every verdict -- status, reason, nodes, targets,
notes -- equals the reference's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.kube.facts import STANDALONE, KubeFacts
from collector.rules import (
    agent_coverage,
    clock_sync,
    container_runtime,
    control_plane_hardware,
    egress_install,
    egress_runtime,
    gpu_nodes,
    gpu_operator,
    kubernetes_version,
    shared_volume,
    system_nodes,
)
from collector.rules.model import Evidence, Verdict
from collector.state import AgentReports, NodeEntry
from preflight.plan import CLUSTER_DOMAIN_TARGET
from preflight.profile import load_profile
from preflight.v1 import report_pb2 as pb
from tests.collector.test_rules_runai import GFD, healthy_platform, node, system
from tests.support import (
    agent_coverage_reference,
    clock_sync_reference,
    container_runtime_reference,
    control_plane_hardware_reference,
    egress_reference,
    gpu_nodes_reference,
    gpu_operator_reference,
    kubernetes_version_reference,
    shared_volume_reference,
    system_nodes_reference,
)
from tests.support.builders import ALL_TARGETS

Rule = Callable[[Evidence], Verdict]
PAIRS: tuple[tuple[str, Rule, Rule], ...] = (
    ("agent_coverage", agent_coverage.evaluate, agent_coverage_reference.evaluate),
    ("shared_volume", shared_volume.evaluate, shared_volume_reference.evaluate),
    ("egress_install", egress_install.evaluate, egress_reference.evaluate_install),
    ("egress_runtime", egress_runtime.evaluate, egress_reference.evaluate_runtime),
    ("gpu_nodes", gpu_nodes.evaluate, gpu_nodes_reference.evaluate),
    ("clock_sync", clock_sync.evaluate, clock_sync_reference.evaluate),
    ("kubernetes_version", kubernetes_version.evaluate, kubernetes_version_reference.evaluate),
    ("container_runtime", container_runtime.evaluate, container_runtime_reference.evaluate),
    ("system_nodes", system_nodes.evaluate, system_nodes_reference.evaluate),
    (
        "control_plane_hardware",
        control_plane_hardware.evaluate,
        control_plane_hardware_reference.evaluate,
    ),
    ("gpu_operator", gpu_operator.evaluate, gpu_operator_reference.evaluate),
)
START = 1_800_000_000.0
NAMES = ("node-a", "node-b", "node-c")
PATHS = ("/mnt/nas", "/mnt/data")
TARGETS = (*ALL_TARGETS, CLUSTER_DOMAIN_TARGET)
P2020 = load_profile("runai-2020")
P225 = load_profile("runai-2.25")
assert P225.container_runtime is not None
PROFILES = (
    P2020,
    P225,
    # Paths named by the profile, and markers that age out within a minute.
    dataclasses.replace(
        P2020,
        shared_volume=dataclasses.replace(
            P2020.shared_volume, paths=PATHS[:1], marker_max_age=60.0
        ),
    ),
    # Docker allowed again.
    dataclasses.replace(
        P225,
        container_runtime=dataclasses.replace(
            P225.container_runtime, allowed=("containerd", "cri-o", "docker")
        ),
    ),
)
_CLUSTER = KubeFacts(
    server_version="v1.34.2",
    nodes=(
        node("node-a", gpus=2, control_plane=True),
        system("node-b"),
        system("node-c", cpu=4),
    ),
    error=None,
    fetched_at=START,
    platform=healthy_platform(),
)
KUBES = (
    STANDALONE,
    _CLUSTER,
    # The same cluster read again: equal nodes in new objects, another fetch time.
    dataclasses.replace(
        _CLUSTER, nodes=tuple(dataclasses.replace(n) for n in _CLUSTER.nodes), fetched_at=START + 30
    ),
    # As read again with node-a labelled by GPU Feature Discovery: only the nodes differ.
    dataclasses.replace(
        _CLUSTER,
        nodes=(dataclasses.replace(_CLUSTER.nodes[0], nvidia_labels=GFD), *_CLUSTER.nodes[1:]),
    ),
    # No system label, an old kubelet, docker, no add-ons read.
    KubeFacts(
        server_version="v1.29.2",
        nodes=(
            node("node-a", kubelet_version="v1.14.0", runtime="docker://20.10.7"),
            node("node-c", gpus=1),
        ),
        error=None,
    ),
    # As above without the old kubelet: only the nodes differ.
    KubeFacts(server_version="v1.29.2", nodes=(node("node-c", gpus=1),), error=None),
    KubeFacts(error="forbidden"),
)
MIRRORS: tuple[tuple[tuple[str, str], ...], ...] = ((), ((ALL_TARGETS[0], "mirror.internal:443"),))
# Marker ages (seconds before the report) around both marker_max_ages, and from the future.
AGES = (299.5, 0.0, 300.0, 300.000001, 59.999999, 60.5, 3600.0, -2.0)
# Clock steps: tiny, across the ages and the lateness of a report (45 s), and back.
WAITS = (1.0, 0.0, 1e-6, 0.5, 45.0, 45.5, 60.0, 300.0, -1.0, -300.0)
SKEWS = (0.0, 0.3, 0.04, -0.06, 59.95, -60.04, 61.0)

# Mostly healthy mounts of the first path: the marker logic is only reached where two
# nodes mount the same path, so that is made likely (sampled lists repeat for weight).
_mount = st.fixed_dictionaries(
    {
        "path": st.sampled_from(PATHS[:1] * 4 + PATHS[1:]),
        "state": st.sampled_from(
            [pb.MOUNT_STATE_MOUNTED] * 6 + [pb.MOUNT_STATE_STUCK, pb.MOUNT_STATE_MISSING]
        ),
        "local": st.sampled_from([False] * 4 + [True]),
        "source": st.sampled_from(["nas:/export"] * 4 + ["nas2:/export"]),
        "write": st.sampled_from([pb.WRITE_CHECK_OK] * 4 + [pb.WRITE_CHECK_FAILED]),
        "latency": st.sampled_from([0.003, 0.02, 1.0, 1.04, 3.0]),
        "nonce": st.sampled_from([True] * 4 + [False]),
        "message": st.sampled_from(["", "stale file handle"]),
        "peers": st.dictionaries(st.sampled_from(NAMES), st.sampled_from(AGES), max_size=3),
    }
)
_egress = st.one_of(
    st.none(),  # not probed
    st.tuples(
        st.sampled_from([pb.REASON_NONE, pb.REASON_CONNECT_TIMEOUT, pb.REASON_TLS_UNTRUSTED]),
        st.booleans(),  # trusted only through an extra CA
        st.sampled_from(["", "CN=Corp CA"]),
    ),
)
_gpus = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {
            "pci": st.integers(0, 2),
            "driver": st.integers(0, 2),
            "kernel": st.sampled_from(
                [pb.KERNEL_MODULE_UNSPECIFIED, pb.KERNEL_MODULE_LOADED, pb.KERNEL_MODULE_NOT_LOADED]
            ),
            "status": st.sampled_from(
                [
                    pb.DRIVER_STATUS_LOADED,
                    pb.DRIVER_STATUS_VERSION_MISMATCH,
                    pb.DRIVER_STATUS_UNREACHABLE,
                ]
            ),
            "version": st.sampled_from(["550.54.15", "535.104.05"]),
            "passthrough": st.integers(0, 1),
        }
    ),
)
# What a node reports, apart from the time: heartbeats repeat it at a new time.
_content = st.fixed_dictionaries(
    {
        "mounts": st.lists(_mount, min_size=1, max_size=3) | st.just([]),
        "egress": st.fixed_dictionaries({t: _egress for t in TARGETS}),
        "gpus": _gpus,
        "ntp": st.sampled_from([True] * 4 + [None, False]),
        "cores": st.sampled_from([None, 4, 32]),  # None: no hardware section
    }
)
_step = st.one_of(
    st.tuples(st.just("report"), st.sampled_from(NAMES), _content, st.sampled_from(SKEWS)),
    st.tuples(st.just("heartbeat"), st.sampled_from(NAMES), st.none(), st.sampled_from(SKEWS)),
    st.tuples(st.just("wait"), st.none(), st.none(), st.sampled_from(WAITS)),
    st.tuples(st.just("stale"), st.sampled_from(NAMES), st.none(), st.none()),
    st.tuples(st.just("leave"), st.sampled_from(NAMES), st.none(), st.none()),
    st.tuples(st.just("wait"), st.none(), st.none(), st.sampled_from(WAITS)),
    st.tuples(st.just("profile"), st.none(), st.none(), st.integers(0, len(PROFILES) - 1)),
    st.tuples(st.just("kube"), st.none(), st.none(), st.integers(0, len(KUBES) - 1)),
    st.tuples(st.just("mirror"), st.none(), st.none(), st.integers(0, len(MIRRORS) - 1)),
    st.tuples(st.just("part"), st.none(), st.none(), st.integers(0, len(NAMES))),
)


def _report(name: str, content: dict[str, Any], sequence: int, at: float) -> pb.NodeReport:
    report = pb.NodeReport(node_name=name, instance_id=f"i-{name}", sequence=sequence)
    report.sent_at.FromNanoseconds(int(at * 1e9))
    for m in content["mounts"]:
        result = report.mounts.add(
            path=m["path"],
            state=m["state"],
            fs_type="ext4" if m["local"] else "nfs4",
            source=m["source"],
            network_filesystem=not m["local"],
            write_check=m["write"],
            # A new latency every report, as a real agent's: only a slow one is read.
            write_latency_seconds=m["latency"] + (sequence % 7) * 1e-4,
            message=m["message"],
        )
        if m["nonce"]:
            result.marker.nonce = f"{name}-{sequence}"
            result.marker.written_at.FromNanoseconds(int(at * 1e9))
        for peer, age in sorted(m["peers"].items()):
            seen = result.marker.peers.add(node_name=peer, nonce="p")
            seen.written_at.FromNanoseconds(int((at - age) * 1e9))
    for target, outcome in content["egress"].items():
        if outcome is None:
            continue
        reason, extra_ca, issuer = outcome
        probed = report.egress.add(
            target=target,
            outcome=pb.OUTCOME_UP if reason == pb.REASON_NONE else pb.OUTCOME_DOWN,
            reason=reason,
        )
        probed.started_at.FromNanoseconds(int((at - 1) * 1e9))
        probed.certificate.issuer = issuer
        probed.certificate.trusted_by_extra_ca = extra_ca
        probed.certificate.not_after.FromSeconds(int(at) + 86400 * 30)
    gpus = content["gpus"]
    if gpus is not None:
        g = report.gpus
        g.pci_count, g.driver_count = gpus["pci"], gpus["driver"]
        g.kernel_module = gpus["kernel"]
        g.kernel_driver_count = max(0, gpus["pci"] - gpus["passthrough"])
        g.passthrough_count = gpus["passthrough"]
        g.driver_status = gpus["status"]
        g.driver_version = gpus["version"]
        for k in range(gpus["pci"]):
            g.pci_devices.add(address=f"0000:{k:02x}:00.0", kernel_driver="nvidia")
            g.kernel_gpus.add(bus_location=f"0000:{k:02x}:00.0", model="NVIDIA H100")
            g.devices.add(index=k, name="NVIDIA H100", pci_bus_id=f"0000:{k:02x}:00.0")
    if content["cores"] is not None:
        cores = content["cores"]
        report.hardware.logical_cores = cores
        report.hardware.memory_total_bytes = cores << 30
        report.hardware.filesystems.add(role="root", path="/", capacity_bytes=cores * 10**10)
    if content["ntp"] is not None:
        report.clock.available = True
        report.clock.synchronised = content["ntp"]
    return report


def _view(nodes: list[NodeEntry], now: float, profile: int, kube: int, mirror: int) -> Evidence:
    state = AgentReports(
        taken_at=now,
        nodes=tuple(sorted(nodes, key=lambda n: n.name)),
        stale_after_seconds=90.0,
        heartbeat_interval=30.0,
        reports_received=len(nodes),
        rejected=(),
        version=1,
    )
    return Evidence(
        state=state,
        profile=PROFILES[profile],
        now=now,
        kube=KUBES[kube],
        cluster_domain="runai.example",
        mirror_of=MIRRORS[mirror],
    )


def _same(view: Evidence) -> None:
    for requirement, fast, reference in PAIRS:
        assert fast(view) == reference(view), requirement


@settings(max_examples=600, deadline=None)
@given(steps=st.lists(_step, min_size=1, max_size=24))
def test_fast_paths_judge_as_the_reference(steps: list[tuple[str, Any, Any, Any]]) -> None:
    now = START
    entries: dict[str, NodeEntry] = {}
    contents: dict[str, dict[str, Any]] = {}
    sequence = 0
    profile = kube = mirror = 0
    for kind, name, content, value in steps:
        if kind in ("report", "heartbeat"):
            if kind == "heartbeat":
                if name not in contents:
                    continue
                content = contents[name]
            contents[name] = content
            sequence += 1
            report = _report(name, content, sequence, now + value)
            previous = entries.get(name)
            entries[name] = NodeEntry.of(
                report,
                received_at=now,
                clock_skew_seconds=value,
                first_seen=previous.first_seen if previous else now,
            )
        elif kind == "stale" and name in entries:
            entries[name] = dataclasses.replace(entries[name], up=False)
        elif kind == "leave":
            entries.pop(name, None)
            contents.pop(name, None)
        elif kind == "wait":
            now += value
        elif kind == "profile":
            profile = value
        elif kind == "kube":
            kube = value
        elif kind == "mirror":
            mirror = value
        elif kind == "part":
            # Isolation judges a rule over one node, or all but some (collector.judging).
            _same(_view(list(entries.values())[:value], now, profile, kube, mirror))
        _same(_view(list(entries.values()), now, profile, kube, mirror))
        # Judged again, unchanged: the kept verdicts and sets.
        _same(_view(list(entries.values()), now, profile, kube, mirror))


def _mount_seeing(peers: dict[str, float]) -> dict[str, Any]:
    return {
        "path": PATHS[0],
        "state": pb.MOUNT_STATE_MOUNTED,
        "local": False,
        "source": "nas:/export",
        "write": pb.WRITE_CHECK_OK,
        "latency": 0.02,
        "nonce": True,
        "message": "",
        "peers": peers,
    }


def _pair(age_of_b: float, at: float) -> list[NodeEntry]:
    """node-a read node-b's marker `age_of_b` seconds before `at`; node-b read a's fresh."""
    out = []
    for sequence, (name, peers) in enumerate(
        (("node-a", {"node-b": age_of_b}), ("node-b", {"node-a": 5.0}))
    ):
        content: dict[str, Any] = {
            "mounts": [_mount_seeing(peers)],
            "egress": {},
            "gpus": None,
            "ntp": None,
            "cores": None,
        }
        report = _report(name, content, sequence, at)
        out.append(NodeEntry.of(report, received_at=at, clock_skew_seconds=0.0, first_seen=at))
    return out


def _statuses(nodes: list[NodeEntry], now: float, profile: int = 0) -> tuple[str, str]:
    judged = _view(nodes, now, profile, 0, 0)
    fast = shared_volume.evaluate(judged)
    assert fast == shared_volume_reference.evaluate(judged)
    return fast.status, fast.reason


def test_a_marker_that_ages_out_is_stale_at_the_next_judging() -> None:
    nodes = _pair(299.5, START)
    assert _statuses(nodes, START)[0] == "pass"
    status, reason = _statuses(nodes, START + 1.0)  # the same reports, a second later
    assert status == "fail"
    assert "sees only stale peer markers: node-a" in reason


def test_a_stale_marker_is_fresh_again_when_the_clock_goes_back() -> None:
    nodes = _pair(300.5, START)
    assert _statuses(nodes, START)[0] == "fail"
    assert _statuses(nodes, START - 1.0)[0] == "pass"


def test_another_marker_max_age_judges_the_same_markers_again() -> None:
    nodes = _pair(100.0, START)
    assert _statuses(nodes, START, profile=0)[0] == "pass"  # 5 minutes
    assert _statuses(nodes, START, profile=2)[0] == "fail"  # 1 minute
    assert _statuses(nodes, START, profile=0)[0] == "pass"


def test_gpu_nodes_found_by_an_agent_alone_are_judged_as_they_come() -> None:
    # node-b has no GPU for Kubernetes; its agent's PCI scan finds some, then none.
    content: dict[str, Any] = {
        "mounts": [],
        "egress": {},
        "gpus": None,
        "ntp": None,
        "cores": 32,
    }
    seen = []
    for sequence, pci in enumerate((0, 2, 0)):
        gpus = {
            "pci": pci,
            "driver": pci,
            "kernel": pb.KERNEL_MODULE_LOADED,
            "status": pb.DRIVER_STATUS_LOADED,
            "version": "550.54.15",
            "passthrough": 0,
        }
        report = _report("node-b", {**content, "gpus": gpus}, sequence, START)
        entry = NodeEntry.of(report, received_at=START, clock_skew_seconds=0.0, first_seen=START)
        judged = _view([entry], START, 1, 1, 0)
        verdict = gpu_operator.evaluate(judged)
        assert verdict == gpu_operator_reference.evaluate(judged)
        seen.append(verdict.reason)
    assert "node-b" in seen[1] and "node-b" not in seen[0] and seen[2] == seen[0]


def test_every_kubernetes_view_and_profile_after_every_other() -> None:
    # The same reports, each (profile, Kubernetes view) judged after each other one: a
    # verdict kept from the view before would show here.
    contents: dict[str, dict[str, Any]] = {
        "node-a": {"mounts": [], "egress": {}, "gpus": None, "ntp": True, "cores": 4},
        "node-b": {
            "mounts": [],
            "egress": {},
            "gpus": {
                "pci": 2,
                "driver": 2,
                "kernel": pb.KERNEL_MODULE_LOADED,
                "status": pb.DRIVER_STATUS_LOADED,
                "version": "550.54.15",
                "passthrough": 0,
            },
            "ntp": False,
            "cores": 32,
        },
    }
    nodes = [
        NodeEntry.of(
            _report(name, content, 1, START),
            received_at=START,
            clock_skew_seconds=0.0,
            first_seen=START,
        )
        for name, content in contents.items()
    ]
    settings_ = [(p, k) for p in range(len(PROFILES)) for k in range(len(KUBES))]
    for before in settings_:
        for after in settings_:
            for profile, kube in (before, after):
                _same(_view(nodes, START, profile, kube, 0))
