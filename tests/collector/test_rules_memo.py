"""The rules' per-report caches (collector/rules/memo.py): same verdicts as judging afresh.

shared_volume, egress_install/egress_runtime, gpu_nodes, clock_sync, cluster_domain_tls
and the sizes system_nodes, control_plane_hardware and gpu_operator read
(collector/rules/sizes.py) keep what they derive from each report between judgings.
Property: after any sequence of reports (nodes coming, changing, going stale, leaving),
each rule's verdict with its warm cache equals the verdict of the same rule with an
empty cache.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.config import LimitsConfig
from collector.isolation import FaultLog
from collector.judging import evaluate_isolated
from collector.kube.facts import KubeFacts
from collector.rules import (
    Rule,
    clock_sync,
    cluster_domain_tls,
    container_runtime,
    control_plane_hardware,
    egress,
    egress_install,
    egress_runtime,
    gpu_nodes,
    gpu_operator,
    kubernetes_version,
    shared_volume,
    sizes,
    system_nodes,
)
from collector.rules import memo as memo_module
from collector.rules.memo import LastVerdict, PerReport
from collector.rules.model import Evidence, Verdict
from collector.state import ClusterState, NodeEntry, decode_report
from preflight.plan import CLUSTER_DOMAIN_TARGET
from preflight.profile import Profile, load_profile
from preflight.v1 import report_pb2 as pb
from tests.collector.test_rule_shared_volume import NOW, Mount, entry, local, view
from tests.collector.test_rules_runai import P225, healthy_platform, node, system
from tests.support.builders import ALL_TARGETS, PROFILE
from tests.support.samples import NOW as SAMPLES_NOW
from tests.support.samples import cluster_reports

NAMES = ("node-a", "node-b", "node-c", "node-d")
RULES = (
    shared_volume.evaluate,
    egress_install.evaluate,
    egress_runtime.evaluate,
    gpu_nodes.evaluate,
)
# Judged with a Kubernetes view of NAMES and a cluster domain, under the profile that
# has the rule's settings.
CLUSTER_RULES = (
    (clock_sync.evaluate, P225),
    (cluster_domain_tls.evaluate, P225),
    (system_nodes.evaluate, P225),
    (control_plane_hardware.evaluate, PROFILE),
    (gpu_operator.evaluate, P225),
)
KUBE = KubeFacts(
    server_version="v1.34.2",
    nodes=(
        node("node-a", control_plane=True),
        system("node-b"),
        system("node-c"),
        node("node-d", gpus=2),
    ),
    error=None,
    fetched_at=NOW,  # the judged view's clock (test_rule_shared_volume)
    platform=healthy_platform(),
)


def test_derives_once_per_report_and_forgets_the_absent() -> None:
    seen: list[str] = []

    def derive(report: pb.NodeReport) -> str:
        seen.append(report.node_name)
        return report.node_name.upper()

    memo = PerReport(derive)
    a, b = entry("a"), entry("b")
    assert memo([a, b]) == ["A", "B"]
    assert memo([a, b]) == ["A", "B"]
    assert seen == ["a", "b"]
    # The key is the report's bytes: another report of the node is derived again...
    a2 = entry("a", Mount())
    assert memo([a2]) == ["A"]
    assert seen == ["a", "b", "a"]
    # ... a stale copy of an entry (the same bytes, up=False) is not.
    assert memo([dataclasses.replace(a2, up=False)]) == ["A"]
    assert seen == ["a", "b", "a"]
    # b was absent from the last call: forgotten, derived again when it comes back.
    assert memo([a2, b]) == ["A", "B"]
    assert seen == ["a", "b", "a", "b"]
    assert memo.derived == 4


def test_a_derived_none_is_cached_too() -> None:
    calls: list[str] = []

    def derive(report: pb.NodeReport) -> None:
        calls.append(report.node_name)

    memo = PerReport(derive)
    a = entry("a")
    assert memo([a]) == [None]
    assert memo([a]) == [None]
    assert calls == ["a"]


# Every cache the rules keep between judgings: (module, attribute, a new empty one).
_CACHES: tuple[tuple[Any, str, Callable[[], object]], ...] = (
    (shared_volume, "_MOUNTS", lambda: PerReport(shared_volume._mounts_of)),
    (shared_volume, "_FRESH", shared_volume._FreshSets),
    (shared_volume, "_LAST", LastVerdict),
    (egress, "_RESULTS", lambda: PerReport(egress._results_of)),
    (egress, "_LAST", lambda: {"install": LastVerdict(), "runtime": LastVerdict()}),
    (gpu_nodes, "_NODES", lambda: PerReport(gpu_nodes._derive)),
    (gpu_nodes, "_LAST", LastVerdict),
    (clock_sync, "_SYNCHRONISED", lambda: PerReport(clock_sync._synchronised)),
    (clock_sync, "_LAST", LastVerdict),
    (cluster_domain_tls, "_RESULTS", lambda: PerReport(cluster_domain_tls._domain_result)),
    (sizes, "_SIZES", lambda: PerReport(sizes._size_of)),
    (sizes, "_last", lambda: ([], [], {})),
    (system_nodes, "_LAST", LastVerdict),
    (kubernetes_version, "_LAST", LastVerdict),
    (container_runtime, "_LAST", LastVerdict),
)


@contextmanager
def cold_caches() -> Iterator[None]:
    saved = [getattr(module, name) for module, name, _ in _CACHES]
    for module, name, empty in _CACHES:
        setattr(module, name, empty())
    try:
        yield
    finally:
        for (module, name, _), cache in zip(_CACHES, saved, strict=True):
            setattr(module, name, cache)


_mount = st.builds(
    Mount,
    state=st.sampled_from([pb.MOUNT_STATE_MOUNTED, pb.MOUNT_STATE_STUCK, pb.MOUNT_STATE_MISSING]),
    write=st.sampled_from([pb.WRITE_CHECK_OK, pb.WRITE_CHECK_FAILED]),
    latency=st.sampled_from([0.02, 3.0]),
    peers=st.dictionaries(st.sampled_from(NAMES), st.sampled_from([5.0, 10_000.0]), max_size=3),
) | st.builds(local, peers=st.dictionaries(st.sampled_from(NAMES), st.just(5.0), max_size=2))
_step = st.tuples(
    st.sampled_from(NAMES),
    st.none() | _mount,  # None: the node leaves
    st.frozensets(st.sampled_from((*ALL_TARGETS, CLUSTER_DOMAIN_TARGET)), max_size=2),  # down
    st.integers(min_value=0, max_value=2),  # GPUs the driver sees (of 2 on PCI; 0: none)
    st.booleans(),  # up (fresh) or late
    st.sampled_from([None, True, False]),  # the kernel's NTP state (None: not reported)
    st.sampled_from([None, 4, 32]),  # logical cores (None: no hardware section)
)


def _report(
    base: NodeEntry, down: frozenset[str], driver: int, ntp: bool | None, cores: int | None
) -> NodeEntry:
    report = pb.NodeReport.FromString(base.raw)
    for target in (*ALL_TARGETS, CLUSTER_DOMAIN_TARGET):
        failing = target in down
        result = report.egress.add(
            target=target,
            outcome=pb.OUTCOME_DOWN if failing else pb.OUTCOME_UP,
            reason=pb.REASON_CONNECT_TIMEOUT if failing else pb.REASON_NONE,
        )
        if target == CLUSTER_DOMAIN_TARGET and not failing:
            result.certificate.not_after.FromSeconds(int(NOW) + 86400 * (3 + driver * 20))
    report.gpus.pci_count = 2 if driver else 0
    report.gpus.driver_count = driver
    if ntp is not None:
        report.clock.available = True
        report.clock.synchronised = ntp
    if cores is not None:
        report.hardware.logical_cores = cores
        report.hardware.memory_total_bytes = cores << 30
        report.hardware.filesystems.add(role="root", path="/", capacity_bytes=cores * 10**10)
    return dataclasses.replace(base, raw=report.SerializeToString())


def _cluster(judged: Evidence, rule: Rule, profile: Profile) -> Verdict:
    return rule(
        dataclasses.replace(judged, profile=profile, kube=KUBE, cluster_domain="runai.example")
    )


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(_step, min_size=1, max_size=12))
def test_warm_caches_judge_like_cold_ones(
    steps: list[tuple[str, Mount | None, frozenset[str], int, bool, bool | None, int | None]],
) -> None:
    nodes: dict[str, NodeEntry] = {}
    for name, mount, down, driver, up, ntp, cores in steps:
        if mount is None:
            nodes.pop(name, None)
        else:
            nodes[name] = _report(entry(name, mount, up=up), down, driver, ntp, cores)
        judged = view(list(nodes.values()))
        warm: list[Verdict] = [rule(judged) for rule in RULES]
        warm += [_cluster(judged, *rule) for rule in CLUSTER_RULES]
        with cold_caches():
            cold = [rule(judged) for rule in RULES]
            cold += [_cluster(judged, *rule) for rule in CLUSTER_RULES]
        assert warm == cold


def test_an_equal_value_derived_again_is_the_last_object() -> None:
    memo = PerReport(lambda report: {"paths": sorted(m.path for m in report.mounts)})
    first = memo([entry("a", Mount())])[0]
    # Another report of the node that derives the same: the rules get the same object,
    # so that their last verdict's inputs compare by identity.
    again = memo([entry("a", Mount(latency=3.0))])[0]
    assert again is first
    changed = memo([entry("a", Mount(), Mount(path="/other"))])[0]
    assert changed == {"paths": ["/mnt/nas", "/other"]}
    assert memo.derived == 3


def test_decoded_reports_are_bounded_by_bytes() -> None:
    cache = memo_module._Decoded(limit=3 * len(entry("node-a").raw))
    raws = [entry(f"node-{c}").raw for c in "abcdef"]
    for raw in raws:
        assert cache(raw).node_name == pb.NodeReport.FromString(raw).node_name
        assert cache._bytes <= cache.limit
    assert sum(len(r) for r in cache._reports) == cache._bytes
    big = entry("node-" + "x" * 1000).raw  # larger than the bound: decoded, not kept
    assert cache(big).node_name.startswith("node-x")
    assert big not in cache._reports


def _judged_afresh() -> dict[str, int]:
    return {
        "shared_volume": shared_volume._LAST.judged,
        "egress": sum(last.judged for last in egress._LAST.values()),
        "gpu_nodes": gpu_nodes._LAST.judged,
        "clock_sync": clock_sync._LAST.judged,
    }


def test_heartbeats_judge_no_rule_afresh_and_decode_each_report_once() -> None:
    state = ClusterState(LimitsConfig(), 30.0, 3, 600.0)
    profile = load_profile("runai-2.25")

    def accept(report: pb.NodeReport, now: float) -> None:
        report.sent_at.FromSeconds(int(now))
        raw = report.SerializeToString()
        state.accept(pb.NodeReport.FromString(raw), now, raw=raw)

    def judge(now: float) -> None:
        view = Evidence(state=state.snapshot(now), profile=profile, now=now)
        evaluate_isolated(view, FaultLog())

    reports = cluster_reports()
    for report in reports:
        accept(report, SAMPLES_NOW)
    judge(SAMPLES_NOW)
    judged, decoded = _judged_afresh(), decode_report.decoded
    # Three heartbeats: a new sequence, new times (sent, markers), the same content.
    for report in reports[:3]:
        report.sequence += 1
        for mount in report.mounts:
            mount.marker.written_at.seconds += 1
            for peer in mount.marker.peers:
                peer.written_at.seconds += 1
        accept(report, SAMPLES_NOW + 1)
    judge(SAMPLES_NOW + 1)
    assert decode_report.decoded - decoded == 3  # once each, for every rule
    assert _judged_afresh() == judged
    # One target of one node goes down: the egress rules judge afresh, the others not.
    failing = reports[0].egress[0]
    failing.outcome, failing.reason = pb.OUTCOME_DOWN, pb.REASON_CONNECT_TIMEOUT
    reports[0].sequence += 1
    accept(reports[0], SAMPLES_NOW + 2)
    judge(SAMPLES_NOW + 2)
    after = _judged_afresh()
    assert after["egress"] == judged["egress"] + 2  # install and runtime
    assert {k: v for k, v in after.items() if k != "egress"} == {
        k: v for k, v in judged.items() if k != "egress"
    }


def test_a_judging_holds_no_decoded_report_after_it() -> None:
    state = ClusterState(LimitsConfig(), 30.0, 3, 600.0)
    for report in cluster_reports():
        raw = report.SerializeToString()
        state.accept(pb.NodeReport.FromString(raw), SAMPLES_NOW, raw=raw)
    view = Evidence(state=state.snapshot(SAMPLES_NOW), profile=PROFILE, now=SAMPLES_NOW)
    memo_module.decoded(view.state.nodes[0].raw)  # as a rule's PerReport decodes
    assert memo_module.decoded._reports
    evaluate_isolated(view, FaultLog())
    assert not memo_module.decoded._reports
    assert memo_module.decoded._bytes == 0
