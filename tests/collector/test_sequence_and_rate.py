"""The sequence rule (no lock-out) and the per-node rate limit, on the real state and server."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest

from collector.config import LimitsConfig
from collector.ratelimit import RateLimiter
from collector.service import CollectorService
from collector.state import ClusterState, Rejected
from preflight.v1 import report_pb2 as pb
from preflight.v1 import report_pb2_grpc as pb_grpc
from tests.support.metrics import ascrape, sample

MAX_SEQUENCE = 2**64 - 1
HEARTBEAT = 30.0


def report(sequence: int, instance: str = "real-instance") -> pb.NodeReport:
    return pb.NodeReport(node_name="gpu-node-7", instance_id=instance, sequence=sequence)


def state() -> ClusterState:
    return ClusterState(LimitsConfig(), HEARTBEAT, 3, 3600.0)


def test_a_spoofed_max_sequence_shuts_the_agent_out_for_at_most_one_heartbeat() -> None:
    """Without auth anyone may report for the node (docs/security.md); the lock-out is bounded."""
    s = state()
    s.accept(report(10), now=1000.0)
    s.accept(report(MAX_SEQUENCE), now=1001.0)  # the spoofer, with the copied instance id
    with pytest.raises(Rejected, match="sequence_regressed"):
        s.accept(report(11), now=1005.0)  # within a heartbeat: a late retry, refused
    s.accept(report(12), now=1001.0 + HEARTBEAT)  # the highest went quiet: accepted again
    node = s.snapshot(1040.0).node("gpu-node-7")
    assert node is not None and node.report.sequence == 12
    s.accept(report(13), now=1041.0)  # and the agent's stream continues normally


def test_an_agent_restored_from_a_snapshot_reports_again_after_a_heartbeat() -> None:
    s = state()
    s.accept(report(500), now=0.0)
    # The VM comes back from a snapshot taken at sequence 200: same instance, lower numbers.
    s.accept(report(201), now=HEARTBEAT + 1)
    node = s.snapshot(HEARTBEAT + 1).node("gpu-node-7")
    assert node is not None and node.report.sequence == 201


def test_a_new_instance_supersedes_at_once() -> None:
    s = state()
    s.accept(report(MAX_SEQUENCE), now=0.0)
    s.accept(report(1, instance="restarted"), now=1.0)
    node = s.snapshot(1.0).node("gpu-node-7")
    assert node is not None and node.report.instance_id == "restarted"


def test_rate_limiter_allows_a_burst_then_one_per_interval() -> None:
    limiter = RateLimiter(min_interval=2.0, burst=3)
    assert [limiter.allow("n", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("n", 1.0) is False  # half a token
    assert limiter.allow("n", 2.1) is True
    assert limiter.allow("other", 2.1) is True  # per node


def test_rate_limiter_stays_bounded_under_many_names() -> None:
    limiter = RateLimiter(min_interval=1.0, burst=2, max_tracked=100)
    for i in range(1000):
        limiter.allow(f"n{i}", float(i) * 10)
    assert len(limiter._buckets) <= 101


async def test_a_flooding_node_is_slowed_and_counted(collector: CollectorService) -> None:
    burst = collector.state.limits.report_burst
    codes = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
        stub = pb_grpc.CollectorStub(channel)
        for sequence in range(1, burst + 4):
            try:
                await stub.Report(report(sequence), timeout=5)
                codes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as error:
                codes.append(error.code())
        # Another node is not affected by this one's flood.
        await stub.Report(pb.NodeReport(node_name="cpu-node-1", instance_id="x", sequence=1))
    assert codes[:burst] == [grpc.StatusCode.OK] * burst
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes[burst:]
    metrics = await ascrape(f"http://127.0.0.1:{collector.http_port}/metrics")
    limited = sample(metrics, "preflight_reports_rejected_total", reason="rate_limited")
    assert limited == codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) > 0
