"""Judging in a child process (collector/judging_process.py) judges as the collector would.

A real child (`python -m collector.judging_process`) over a real socket pair, fed only
what changed: after any sequence of reports, staleness, departures, profile and
Kubernetes changes its judgement equals evaluate_isolated's in process; a node whose
data breaks a rule is found and counted the same; a child that dies or lost its copy is
replaced and sent everything again, and meanwhile the parent judges in process.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector import child as child_module
from collector.config import CollectorConfig, LimitsConfig, ListenConfig
from collector.isolation import FaultLog
from collector.judging import evaluate_isolated
from collector.judging_process import JudgingProcess
from collector.kube.facts import KubeFacts
from collector.rules.model import Evidence
from collector.service import CollectorService
from collector.state import AgentReports, ClusterState, NodeEntry
from preflight.profile import load_profile
from preflight.v1 import report_pb2 as pb
from tests.support import judging_message_reference
from tests.support.builders import T0, cluster, egress_down, egress_up, hardware, kube_node, ts

NAMES = ("n0", "n1", "n2", "n3")
HEARTBEAT = 30.0
PROFILES = tuple(load_profile(name) for name in ("runai-2020", "runai-2.18"))
KUBES = (
    KubeFacts(),
    cluster("v1.17.4", *(kube_node(n, gpus=8) for n in NAMES[:3])),
    cluster("v1.29.2", kube_node("n0", control_plane=True), kube_node("n1", gpus=8)),
)

_step = st.one_of(
    st.tuples(st.just("report"), st.sampled_from(NAMES), st.integers(0, 3)),
    st.tuples(st.just("wait"), st.just(""), st.sampled_from([1, 40, 100, 400])),
    st.tuples(st.just("profile"), st.just(""), st.integers(0, len(PROFILES) - 1)),
    st.tuples(st.just("kube"), st.just(""), st.integers(0, len(KUBES) - 1)),
)


def _report(name: str, shape: int, sequence: int, now: float) -> pb.NodeReport:
    message = pb.NodeReport(
        node_name=name,
        instance_id="i",
        sequence=sequence,
        sent_at=ts(now),
        hardware=hardware(8 * (shape + 1), 2**30 * (shape + 1)),
        gpus=pb.GpuFacts(pci_count=8 * (shape % 2), driver_count=8 * (shape // 2)),
    )
    message.egress.append(egress_up("quay.io"))
    if shape % 2:
        message.egress.append(egress_down("app.run.ai", pb.REASON_DNS_NXDOMAIN, [pb.PHASE_RESOLVE]))
    mount = message.mounts.add(path="/nas", state=pb.MOUNT_STATE_MOUNTED, fs_type="nfs4")
    mount.network_filesystem = shape != 3
    mount.marker.nonce = f"{name}-{sequence}"
    peer = mount.marker.peers.add(node_name="n0" if name != "n0" else "n1", nonce="x")
    peer.written_at.CopyFrom(ts(now - 5))
    return message


@pytest.fixture(scope="module")
def judging() -> Iterator[JudgingProcess]:
    process = JudgingProcess()
    process.start()
    yield process
    process.close()


def _evidence(state: ClusterState, now: float, profile: int = 0, kube: int = 0) -> Evidence:
    return Evidence(state=state.snapshot(now), profile=PROFILES[profile], now=now, kube=KUBES[kube])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(_step, min_size=1, max_size=16))
def test_the_child_judges_like_the_collector(
    judging: JudgingProcess, steps: list[tuple[str, str, int]]
) -> None:
    # forget_after 200 s: long waits make nodes stale, then gone.
    state = ClusterState(LimitsConfig(report_burst=10**6), HEARTBEAT, 3, 200.0)
    now, sequence, profile, kube = T0, 0, 0, 0
    for kind, name, detail in steps:
        if kind == "report":
            sequence += 1
            state.accept(_report(name, detail, sequence, now), now)
        elif kind == "wait":
            now += detail
        elif kind == "profile":
            profile = detail
        else:
            kube = detail
        view = _evidence(state, now, profile, kube)
        judged = judging.evaluate(view)
        assert judged is not None
        assert judged.judgement == evaluate_isolated(view, FaultLog())
        assert judged.faults == 0


def test_only_what_changed_is_sent(judging: JudgingProcess) -> None:
    state = ClusterState(LimitsConfig(report_burst=10**6), HEARTBEAT, 3, 10**6)
    for i, name in enumerate(NAMES):
        state.accept(_report(name, 0, i + 1, T0), T0)
    assert judging.evaluate(_evidence(state, T0 + 1)) is not None  # now holds all four
    sent = judging.sent_entries
    assert judging.evaluate(_evidence(state, T0 + 2)) is not None
    assert judging.sent_entries == sent  # nothing changed: no entry sent
    state.accept(_report("n1", 1, 10, T0 + 3), T0 + 3)
    judged = judging.evaluate(_evidence(state, T0 + 4))
    assert judging.sent_entries == sent + 1
    assert judged is not None and judged.judgement == evaluate_isolated(
        _evidence(state, T0 + 4), FaultLog()
    )
    # Stale now (three heartbeats): each node's entry says so once more.
    later = T0 + 4 * HEARTBEAT
    judging.evaluate(_evidence(state, later))
    assert judging.sent_entries == sent + 1 + len(NAMES)


def test_a_verdict_kept_by_the_rules_is_answered_by_position(judging: JudgingProcess) -> None:
    state = ClusterState(LimitsConfig(report_burst=10**6), HEARTBEAT, 3, 10**6)
    for i, name in enumerate(NAMES):
        state.accept(_report(name, 0, i + 1, T0), T0)
    first = judging.evaluate(_evidence(state, T0 + 1))
    kept = judging.verdicts_kept
    # Nothing changed: the rules that keep their verdict (runai-2020: kubernetes_version,
    # shared_volume, both egress rules, gpu_nodes) give the same object, the child only
    # its position; agent_coverage and control_plane_hardware judge afresh.
    again = judging.evaluate(_evidence(state, T0 + 2))
    assert first is not None and again is not None
    assert judging.verdicts_kept - kept == 5
    assert again.judgement == first.judgement
    # One node's egress changes: that verdict comes in full, the others by position.
    kept = judging.verdicts_kept
    state.accept(_report("n2", 1, 20, T0 + 3), T0 + 3)
    changed = judging.evaluate(_evidence(state, T0 + 4))
    assert changed is not None
    assert changed.judgement == evaluate_isolated(_evidence(state, T0 + 4), FaultLog())
    assert 0 < judging.verdicts_kept - kept < len(changed.judgement.verdicts)


def test_a_node_going_stale_is_judged_so_at_the_next_judging(judging: JudgingProcess) -> None:
    state = ClusterState(LimitsConfig(report_burst=10**6), HEARTBEAT, 3, 10**6)
    for i, name in enumerate(NAMES):
        state.accept(_report(name, 0, i + 1, T0), T0)
    later = T0 + 2 * HEARTBEAT
    for i, name in enumerate(NAMES[1:]):  # every node but n0 keeps reporting
        state.accept(_report(name, 0, i + 10, later), later)
    for now in (T0 + 1, T0 + 2, later + 1):  # warm caches: judged twice before
        assert judging.evaluate(_evidence(state, now)) is not None
    stale_at = T0 + 3 * HEARTBEAT + 1  # n0's report is older than three heartbeats now
    judged = judging.evaluate(_evidence(state, stale_at))
    assert judged is not None
    by_rule = {v.requirement: v for v in judged.judgement.verdicts}
    assert by_rule["agent_coverage"].status == "fail"
    assert by_rule["agent_coverage"].nodes == ("n0",)
    # Judged without n0: the others read only its marker, and n0 is no peer any more.
    assert by_rule["shared_volume"].nodes == ("n1", "n2", "n3")
    assert judged.judgement == evaluate_isolated(_evidence(state, stale_at), FaultLog())


def test_an_answer_out_of_step_is_not_trusted(judging: JudgingProcess) -> None:
    state = ClusterState(LimitsConfig(report_burst=10**6), HEARTBEAT, 3, 10**6)
    state.accept(_report("n0", 0, 1, T0), T0)
    assert judging.evaluate(_evidence(state, T0 + 1)) is not None
    judging._answered = ()  # as if this side had lost the child's last answer
    assert judging.evaluate(_evidence(state, T0 + 2)) is None  # judged in process instead
    judged = judging.evaluate(_evidence(state, T0 + 3))  # everything sent again
    assert judged is not None
    assert judged.judgement == evaluate_isolated(_evidence(state, T0 + 3), FaultLog())


def test_a_node_that_breaks_a_rule_is_found_and_counted_as_in_process(
    judging: JudgingProcess,
) -> None:
    state = ClusterState(LimitsConfig(report_burst=10**6), HEARTBEAT, 3, 10**6)
    state.accept(_report("n0", 0, 1, T0), T0)
    good = _evidence(state, T0 + 1)
    broken = NodeEntry(
        name="n9", raw=b"\xff\xff\xff", received_at=T0, clock_skew_seconds=0.0, first_seen=T0
    )
    view = dataclasses.replace(
        good, state=dataclasses.replace(good.state, nodes=(*good.state.nodes, broken))
    )
    here = FaultLog()
    expected = evaluate_isolated(view, here)
    assert [name for name, _ in expected.unusable] == ["n9"]
    judged = judging.evaluate(view)
    assert judged is not None
    assert judged.judgement == expected
    assert judged.faults == dict(here.counts())["rules"] > 0


def test_a_child_that_lost_its_copy_gets_everything_again(judging: JudgingProcess) -> None:
    state = ClusterState(LimitsConfig(report_burst=10**6), HEARTBEAT, 3, 10**6)
    for i, name in enumerate(NAMES):
        state.accept(_report(name, i, i + 1, T0), T0)
    view = _evidence(state, T0 + 1, kube=1)
    assert judging.evaluate(view) is not None
    # The parent believes the child holds a later copy than it does: it answers resync.
    judging._epoch += 5
    resyncs, sent = judging.resyncs, judging.sent_entries
    judged = judging.evaluate(view)
    assert judging.resyncs == resyncs + 1
    assert judging.sent_entries == sent + len(NAMES)
    assert judged is not None and judged.judgement == evaluate_isolated(view, FaultLog())


def test_a_dead_child_is_replaced_and_judging_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    process = JudgingProcess()
    try:
        state = ClusterState(LimitsConfig(report_burst=10**6), HEARTBEAT, 3, 10**6)
        for i, name in enumerate(NAMES):
            state.accept(_report(name, i, i + 1, T0), T0)
        view = _evidence(state, T0 + 1, kube=1)
        assert process.evaluate(view) is not None
        pid = process.child.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert process.evaluate(view) is None  # the caller judges in process
        monkeypatch.setattr(child_module, "RESTART_AFTER_SECONDS", 0.0)
        sent = process.sent_entries
        judged = process.evaluate(view)
        assert process.child.pid not in (None, pid)
        assert process.sent_entries == sent + len(NAMES)  # the new child got everything
        assert judged is not None and judged.judgement == evaluate_isolated(view, FaultLog())
    finally:
        process.close()


async def test_the_service_judges_in_its_child_and_stops_it() -> None:
    config = CollectorConfig(listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"))
    judging = JudgingProcess()
    service = CollectorService(config, judging_process=judging)
    plain = CollectorService(config)
    await service.start()
    await plain.start()
    try:
        pid = judging.child.pid
        assert pid is not None
        now = time.time()
        for target in (service, plain):
            target.state.accept(_report("n0", 1, 1, now), now)
        calls = judging.child.calls
        await service.observe()
        await plain.observe()
        assert judging.child.calls == calls + 1
        # As judged in process (`since` aside: each service's hysteresis has its own clock).
        shown = [(v.requirement, v.status, v.reason, v.nodes) for v in service._verdicts]
        assert shown == [(v.requirement, v.status, v.reason, v.nodes) for v in plain._verdicts]
        assert service.judging_cpu_seconds > 0
    finally:
        await service.stop()
        await plain.stop()
    assert judging.child.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


_change = st.tuples(
    st.sampled_from(["report", "stale", "fresh", "leave"]), st.sampled_from((*NAMES, "n4"))
)


@settings(max_examples=200, deadline=None)
@given(judgings=st.lists(st.lists(_change, max_size=6), min_size=1, max_size=8))
def test_it_sends_what_the_per_node_loop_sent(
    judgings: list[list[tuple[str, str]]],
) -> None:
    process = JudgingProcess()  # never started: only its messages are read
    nodes: dict[str, NodeEntry] = {}
    held: judging_message_reference.Held = {}
    sequence = 0
    for changes in judgings:
        for kind, name in changes:
            if kind == "report":
                sequence += 1
                nodes[name] = NodeEntry.of(
                    _report(name, sequence % 4, sequence, T0),
                    received_at=T0,
                    clock_skew_seconds=0.0,
                    first_seen=T0,
                )
            elif kind == "leave":
                nodes.pop(name, None)
            elif name in nodes:
                nodes[name] = dataclasses.replace(nodes[name], up=kind == "fresh")
        snapshot = tuple(nodes[n] for n in sorted(nodes))
        view = Evidence(
            state=AgentReports(T0, snapshot, 90.0, HEARTBEAT, 0, (), 0),
            profile=PROFILES[0],
            now=T0,
        )
        message, sent = process._message(view)
        changed, removed, held = judging_message_reference.changes(held, snapshot)
        assert [entry.name for entry in message["changed"]] == changed
        assert message["removed"] == removed
        # As if the child answered: the next message is relative to this one.
        process._sent, process._epoch = sent, message["epoch"]
