"""The state keeps each accepted report as its bytes, and nothing decodes an unchanged one.

A decoded report costs about three times its bytes in memory (collector/state.py), so
ClusterState holds `NodeEntry.raw` and decodes on access. That is only cheap if the
per-second work never decodes the reports that did not change: the judging (every rule
of every profile, through collector.rules.memo) and the /metrics pre-encoding decode a
report once, when it arrives, and not again on the next pass.
"""

from __future__ import annotations

import dataclasses
import pickle

from google.protobuf.message import Message

from collector.config import LimitsConfig
from collector.exposition import Exposition
from collector.isolation import FaultLog
from collector.judging import evaluate_isolated
from collector.kube.facts import KubeFacts
from collector.published import Published
from collector.rules.model import Evidence
from collector.state import ClusterState, NodeEntry, decode_report
from preflight.profile import load_profile, shipped_profiles
from preflight.v1 import report_pb2 as pb
from tests.collector.test_rules_runai import healthy_platform, node
from tests.support.samples import cluster_reports, node_report

NOW = 1_800_000_000.0


def _state() -> ClusterState:
    return ClusterState(LimitsConfig(), 30.0, 3, 600.0)


def _accept(state: ClusterState, report: pb.NodeReport, now: float = NOW) -> bytes:
    report.sent_at.FromSeconds(int(now))
    raw = report.SerializeToString()
    state.accept(pb.NodeReport.FromString(raw), now, raw=raw)
    return raw


def test_entries_hold_the_accepted_bytes_and_no_message() -> None:
    state = _state()
    sent = {r.node_name: _accept(state, r) for r in cluster_reports()}
    for entry in state.snapshot(NOW).nodes:
        values = [getattr(entry, f.name) for f in dataclasses.fields(NodeEntry)]
        assert not [v for v in values if isinstance(v, Message)]
        assert not hasattr(entry, "__dict__")  # nothing cached on the entry either
        assert entry.raw is sent[entry.name]  # the very bytes ingest handed over
        assert entry.report == pb.NodeReport.FromString(sent[entry.name])
        assert (entry.instance_id, entry.sequence) == (entry.report.instance_id, 1)


def test_a_report_whose_text_was_cut_is_stored_as_cut() -> None:
    state = _state()
    report = node_report("n1")
    report.egress[0].message = "x" * (LimitsConfig().max_text_length + 10)
    raw = _accept(state, report)
    entry = state.snapshot(NOW).node("n1")
    assert entry is not None and entry.raw != raw
    stored = entry.report.egress[0].message
    assert stored.endswith("…") and len(stored) == LimitsConfig().max_text_length
    # The state's byte bound counts what it holds.
    assert state._bytes == len(entry.raw)


def _views(state: ClusterState, now: float) -> list[Evidence]:
    snapshot = state.snapshot(now)
    kube = KubeFacts(
        server_version="v1.34.2",
        nodes=tuple(node(n.name, gpus=8) for n in snapshot.nodes),
        error=None,
        fetched_at=now,
        platform=healthy_platform(),
    )
    return [
        Evidence(snapshot, load_profile(p), now, kube, cluster_domain="runai.example")
        for p in shipped_profiles()
    ]


def _judge_all(views: list[Evidence]) -> int:
    """Decodes while judging every profile's rules over `views`."""
    before = decode_report.decoded
    for view in views:
        evaluate_isolated(view, FaultLog())
    return decode_report.decoded - before


def test_judging_decodes_only_the_reports_that_changed() -> None:
    state = _state()
    for report in cluster_reports():
        _accept(state, report)
    assert _judge_all(_views(state, NOW)) > 0  # the first judging derives from every report
    assert _judge_all(_views(state, NOW + 1)) == 0
    replaced = node_report("gpu-node-2", pci=8, driver=7, sequence=2)
    _accept(state, replaced, NOW + 2)
    # One report arrived: every rule that reads reports derives from it, decoded once.
    assert _judge_all(_views(state, NOW + 2)) == 1
    assert _judge_all(_views(state, NOW + 3)) == 0
    # A node gone stale is judged from the same bytes: nothing decoded either.
    assert _judge_all(_views(state, NOW + 100)) == 0


def test_pre_encoding_decodes_only_the_nodes_that_changed() -> None:
    state = _state()
    for report in cluster_reports():
        _accept(state, report)
    exposition = Exposition()

    def prepare(now: float) -> int:
        before = decode_report.decoded
        exposition.prepare(Published(state=state.snapshot(now), verdicts=(), ready=()))
        return decode_report.decoded - before

    # Cold: each node once, although every concern of its text reads its report.
    assert prepare(NOW) == len(cluster_reports())
    assert prepare(NOW + 1) == 0
    _accept(state, node_report("cpu-node-3", sequence=2), NOW + 2)
    assert prepare(NOW + 2) == 1


def test_an_entry_pickles_whole_by_position() -> None:
    # Entries go to the helper processes pickled (collector/child.py); __reduce__ lists
    # the fields by position, so a field added to NodeEntry must be added there too.
    entry = NodeEntry(
        name="n",
        raw=b"\x0a\x01n",
        received_at=1.5,
        clock_skew_seconds=-2.0,
        first_seen=0.5,
        last_success=(("quay.io", 1.0),),
        up=False,
        instance_id="i-1",
        sequence=7,
    )
    assert pickle.loads(pickle.dumps(entry)) == entry
    _, args = entry.__reduce__()
    assert args == tuple(getattr(entry, f.name) for f in dataclasses.fields(NodeEntry))
