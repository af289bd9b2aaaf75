"""A shared volume probed read-only (no marker of its own) makes a report the collector takes.

Found by `preflight check`, which runs the collector's ingest validation on the agent's
own report: the mount probe leaves `written_at` at 0 when it writes no marker, and the
epoch as a Timestamp is outside the collector's `max_timestamp_offset`.
"""

from __future__ import annotations

import time

from agent.probes.results import MountResult, PeerMarker, SharedMarker
from agent.snapshot import Snapshot, build_report
from collector.config import LimitsConfig
from collector.validation import validate
from preflight.v1 import report_pb2 as pb


def _report(marker: SharedMarker) -> pb.NodeReport:
    mount = MountResult(path="/mnt/share", state="mounted", fs_type="nfs4", marker=marker)
    return build_report(
        Snapshot(results={"mounts": [mount]}),
        node_name="n",
        agent_version="test",
        instance_id="i",
        sequence=1,
        probe_interval=15.0,
        heartbeat_interval=30.0,
    )


def test_read_only_volume_report_is_accepted() -> None:
    now = time.time()
    peers = [PeerMarker(node_name="m", nonce="ab" * 16, written_at=now - 5)]
    report = _report(SharedMarker(nonce="", written_at=0.0, peers=peers, markers_seen=1))
    assert not report.mounts[0].marker.HasField("written_at")
    assert report.mounts[0].marker.peers[0].node_name == "m"
    validate(report, LimitsConfig(), now)  # raises Rejected if not


def test_written_marker_keeps_its_time() -> None:
    now = time.time()
    report = _report(SharedMarker(nonce="cd" * 16, written_at=now))
    written = report.mounts[0].marker.written_at.ToNanoseconds() / 1e9
    assert abs(written - now) < 1e-3
    validate(report, LimitsConfig(), now)
