"""The rules' per-report caches (collector/rules/memo.py): same verdicts as judging afresh.

shared_volume, egress_install/egress_runtime and gpu_nodes keep what they derive from
each report between judgings. Property: after any sequence of reports (nodes coming,
changing, going stale, leaving), each rule's verdict with its warm cache equals the
verdict of the same rule with an empty cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.rules import egress, egress_install, egress_runtime, gpu_nodes, shared_volume
from collector.rules.memo import PerReport
from collector.rules.model import Verdict
from collector.state import NodeEntry
from preflight.v1 import report_pb2 as pb
from tests.collector.test_rule_shared_volume import Mount, entry, local, view
from tests.support.builders import ALL_TARGETS

NAMES = ("node-a", "node-b", "node-c", "node-d")
RULES = (
    shared_volume.evaluate,
    egress_install.evaluate,
    egress_runtime.evaluate,
    gpu_nodes.evaluate,
)


def test_derives_once_per_report_and_forgets_the_absent() -> None:
    seen: list[str] = []

    def derive(report: pb.NodeReport) -> str:
        seen.append(report.node_name)
        return report.node_name.upper()

    memo = PerReport(derive)
    a, b = pb.NodeReport(node_name="a"), pb.NodeReport(node_name="b")
    assert memo([a, b]) == ["A", "B"]
    assert memo([a, b]) == ["A", "B"]
    assert seen == ["a", "b"]
    # The same content in a new object is a new report: derived again.
    a2 = pb.NodeReport(node_name="a")
    assert memo([a2]) == ["A"]
    assert seen == ["a", "b", "a"]
    # b was absent from the last call: forgotten, derived again when it comes back.
    assert memo([a2, b]) == ["A", "B"]
    assert seen == ["a", "b", "a", "b"]
    assert memo.derived == 4


@contextmanager
def cold_caches() -> Iterator[None]:
    saved = (shared_volume._MOUNTS, egress._RESULTS, gpu_nodes._NODES)
    shared_volume._MOUNTS = PerReport(shared_volume._mounts_of)
    egress._RESULTS = PerReport(egress._results_of)
    gpu_nodes._NODES = PerReport(gpu_nodes._derive)
    try:
        yield
    finally:
        shared_volume._MOUNTS, egress._RESULTS, gpu_nodes._NODES = saved


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
    st.frozensets(st.sampled_from(ALL_TARGETS), max_size=2),  # targets down
    st.integers(min_value=0, max_value=2),  # GPUs the driver sees (of 2 on PCI)
    st.booleans(),  # up (fresh) or late
)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(_step, min_size=1, max_size=12))
def test_warm_caches_judge_like_cold_ones(
    steps: list[tuple[str, Mount | None, frozenset[str], int, bool]],
) -> None:
    nodes: dict[str, NodeEntry] = {}
    for name, mount, down, driver, up in steps:
        if mount is None:
            nodes.pop(name, None)
        else:
            node = entry(name, mount, up=up)
            for target in ALL_TARGETS:
                failing = target in down
                node.report.egress.add(
                    target=target,
                    outcome=pb.OUTCOME_DOWN if failing else pb.OUTCOME_UP,
                    reason=pb.REASON_CONNECT_TIMEOUT if failing else pb.REASON_NONE,
                )
            node.report.gpus.pci_count = 2
            node.report.gpus.driver_count = driver
            nodes[name] = node
        judged = view(list(nodes.values()))
        warm: list[Verdict] = [rule(judged) for rule in RULES]
        with cold_caches():
            cold = [rule(judged) for rule in RULES]
        assert warm == cold
