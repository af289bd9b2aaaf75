"""Property: no NodeReport, however hostile, stops the judging, blanks a surface or leaks.

Arbitrary reports (tests/support/proto_strategies.py) go through a real collector:
the gRPC servicer on loopback, the state, the rules, /metrics, the JSON API and the
status page over HTTP. For every report: every surface answers 200 with well-formed
output, /metrics has no duplicate series (and passes `promtool check metrics` for
each accepted report), the two healthy nodes' series and JSON are exactly what they
were, judging completed again, and a refused report was counted.

`PREFLIGHT_HYPOTHESIS_EXAMPLES` sets the number of examples (default 2000; the longer
run documented in docs/performance.md uses 10000).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from collector.config import CollectorConfig, LimitsConfig, ListenConfig
from collector.rules import REQUIREMENTS
from collector.state import REJECTION_REASONS
from preflight.v1 import report_pb2 as pb
from tests.support.builders import report as healthy_report
from tests.support.proto_strategies import messages
from tests.support.threaded_collector import ThreadedCollector, strict_json

EXAMPLES = int(os.environ.get("PREFLIGHT_HYPOTHESIS_EXAMPLES", "2000"))
# promtool costs ~30 ms a run: every 5th accepted report in the normal suite (the
# Python parser and the duplicate check run on all of them), every one in a long run.
PROMTOOL_EVERY = int(os.environ.get("PREFLIGHT_PROMTOOL_EVERY", "1" if EXAMPLES >= 10000 else "5"))
HEALTHY = ("healthy-a", "healthy-b")
HOSTILE_NAMES = ("hostile", "<img src=x onerror=alert(1)>", 'q"uote\\back\nline', "h" * 253)


def _healthy(name: str) -> pb.NodeReport:
    message = healthy_report(name, pci=8, driver=8)
    message.sent_at.GetCurrentTime()
    mount = message.mounts.add(path="/mnt/nas", fs_type="nfs4", source="nas:/export")
    mount.state = pb.MOUNT_STATE_MOUNTED
    mount.network_filesystem = True
    return message


@pytest.fixture(scope="module")
def collector() -> Iterator[ThreadedCollector]:
    # A long heartbeat: nothing about the healthy nodes may change with time in this test.
    # No rate limit: thousands of reports under a few names in seconds are the point here
    # (the limit has its own tests).
    config = CollectorConfig(
        listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"),
        heartbeat_interval=3600.0,
        limits=LimitsConfig(report_burst=10**9),
    )
    running = ThreadedCollector(config)
    for name in HEALTHY:
        assert running.send(_healthy(name)) == grpc.StatusCode.OK
    running.call(running.service.observe())
    yield running
    running.close()


def series(text: str) -> list[str]:
    """Every sample line's name and labels (the value cut off)."""
    # Split on "\n" only, as the exposition format does (str.splitlines also splits on
    # \x1c-\x1e, \x85 and \u2028, which label values may contain).
    return [line.rsplit(" ", 1)[0] for line in text.split("\n") if line and line[0] != "#"]


def counter(text: str, name: str) -> float:
    """Sum of a family's samples (a line scan: the full parser runs once per example)."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.split("\n")
        if line.startswith(name) and line[len(name)] in "{ "
    )


def node_lines(text: str, name: str) -> list[str]:
    needle = f'node="{name}"'
    return [line for line in text.split("\n") if needle in line]


def stable_json(entry: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in entry.items() if k != "last_report_age_seconds"}


class Baseline:
    def __init__(self, collector: ThreadedCollector) -> None:
        status, text = collector.get("/metrics")
        assert status == 200
        self.lines = {n: node_lines(text, n) for n in HEALTHY}
        assert all(self.lines.values())
        status, body = collector.get("/api/v1/nodes")
        assert status == 200
        self.nodes = {
            e["node"]: stable_json(e) for e in strict_json(body)["nodes"] if e["node"] in HEALTHY
        }
        assert set(self.nodes) == set(HEALTHY)


_baseline: Baseline | None = None
_last_metrics: dict[str, str] = {}
_accepted = [0]


def baseline(collector: ThreadedCollector) -> Baseline:
    global _baseline
    if _baseline is None:
        _baseline = Baseline(collector)
    return _baseline


@st.composite
def hostile_reports(draw: st.DrawFn) -> pb.NodeReport:
    message = draw(messages(pb.NodeReport.DESCRIPTOR))
    assert isinstance(message, pb.NodeReport)
    # Never a healthy node's name: impersonation is issue 11's (authentication), not data.
    message.node_name = draw(st.sampled_from((*HOSTILE_NAMES, "", "x" * 300)))
    if draw(st.booleans()):
        message.sent_at.GetCurrentTime()
    return message


def _promtool_check(text: str) -> None:
    tool = shutil.which("promtool")
    assert tool is not None, "promtool (Debian package prometheus) is required"
    proc = subprocess.run(
        [tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    # promtool exits 0 (clean) or 3 (lint warnings only); 1 is a parse error.
    assert proc.returncode in (0, 3), proc.stdout + proc.stderr
    assert "error" not in (proc.stdout + proc.stderr).lower(), proc.stdout + proc.stderr


def check_every_surface(collector: ThreadedCollector, name: str, accepted: bool) -> str:
    status, text = collector.get("/metrics")
    assert status == 200
    list(text_string_to_metric_families(text))  # parses
    lines = series(text)
    assert len(lines) == len(set(lines)), "duplicate series in /metrics"
    base = baseline(collector)
    for healthy in HEALTHY:
        assert node_lines(text, healthy) == base.lines[healthy]
    status, body = collector.get("/api/v1/verdicts")
    assert status == 200
    verdicts = strict_json(body)["verdicts"]
    judged = collector.service.profile.requirement_phases()  # the profile's requirements
    assert [v["requirement"] for v in verdicts] == [r for r in REQUIREMENTS if r in judged]
    status, body = collector.get("/api/v1/nodes")
    assert status == 200
    entries = {e["node"]: e for e in strict_json(body)["nodes"]}
    for healthy in HEALTHY:
        assert stable_json(entries[healthy]) == base.nodes[healthy]
    assert (name in entries) == accepted
    if accepted:
        status, body = collector.get(collector.node_path(name))
        assert status == 200
        assert strict_json(body)["node"] == name
    status, page = collector.get("/")
    assert status == 200
    assert page.rstrip().endswith("</html>")
    for healthy in HEALTHY:
        assert f'data-node="{healthy}"' in page
    return text


def _forget(collector: ThreadedCollector, name: str) -> None:
    collector.in_loop(collector.service.state.forget, name)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(message=hostile_reports())
def test_no_report_breaks_any_surface(collector: ThreadedCollector, message: pb.NodeReport) -> None:
    baseline(collector)
    before = _last_metrics.get("text") or collector.get("/metrics")[1]
    judged_before = collector.service.current_view().judged_at
    code = collector.send(message)
    # Only two answers exist: stored, or refused with a reason (never UNKNOWN/INTERNAL).
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), code
    accepted = code == grpc.StatusCode.OK
    try:
        collector.call(collector.service.observe())
        assert collector.service.current_view().judged_at > judged_before
        text = check_every_surface(collector, message.node_name, accepted)
        received = counter(text, "preflight_reports_received_total") - counter(
            before, "preflight_reports_received_total"
        )
        rejected = counter(text, "preflight_reports_rejected_total") - counter(
            before, "preflight_reports_rejected_total"
        )
        assert (received, rejected) == ((1.0, 0.0) if accepted else (0.0, 1.0))
        assert counter(text, "preflight_node_data_errors_total") == 0
        assert counter(text, "preflight_judging_errors_total") == 0
        # Only its counters are read by the next example, and forgetting a node keeps them.
        _last_metrics["text"] = text
        if accepted:
            _accepted[0] += 1
            if _accepted[0] % PROMTOOL_EVERY == 1 or PROMTOOL_EVERY == 1:
                _promtool_check(text)
    except BaseException:
        _last_metrics.clear()  # a failed example must not skew the next one's counts
        raise
    finally:
        _forget(collector, message.node_name)


@settings(max_examples=max(EXAMPLES // 10, 50), deadline=None, database=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    flips=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=8),
)
def test_corrupted_bytes_are_refused_or_stored_never_crash(
    collector: ThreadedCollector, seed: int, flips: list[int]
) -> None:
    raw = bytearray(_healthy("hostile").SerializeToString())
    for position in flips:
        raw[position % len(raw)] ^= 1 << (seed % 8)
        seed //= 8
    _, before = collector.get("/metrics")
    code = collector.send_raw(bytes(raw))
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), code
    try:
        status, text = collector.get("/metrics")
        assert status == 200
        total_before = counter(before, "preflight_reports_received_total") + counter(
            before, "preflight_reports_rejected_total"
        )
        total = counter(text, "preflight_reports_received_total") + counter(
            text, "preflight_reports_rejected_total"
        )
        assert total == total_before + 1
    finally:
        names: list[str] = collector.in_loop(lambda: list(collector.service.state._nodes))
        for name in names:
            if name not in HEALTHY:
                _forget(collector, name)


def test_every_rejection_reason_is_exposed(collector: ThreadedCollector) -> None:
    _, text = collector.get("/metrics")
    for reason in REJECTION_REASONS:
        assert f'preflight_reports_rejected_total{{reason="{reason}"}}' in text
