"""The collector's gRPC ingest against a real server: acceptance, every rejection reason, health."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from collector.service import CollectorService
from preflight.v1 import report_pb2 as pb
from tests.support.ingest_calls import report, send, send_raw
from tests.support.metrics import ascrape, sample


async def test_accepts_report_and_acks_with_clock_and_heartbeat(
    collector: CollectorService,
) -> None:
    ack = await send(collector, report())
    assert ack.heartbeat_interval_seconds == collector.config.heartbeat_interval
    assert ack.collector_time.seconds > 0
    metrics = await ascrape(f"http://127.0.0.1:{collector.http_port}/metrics")
    assert sample(metrics, "preflight_agent_up", node="node-a") == 1.0
    assert sample(metrics, "preflight_reports_received_total") == 1.0


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("node_name_empty", lambda: report(name="")),
        ("node_name_empty", lambda: report(name="   ")),
        ("node_name_too_long", lambda: report(name="n" * 64)),
        (
            "too_many_targets",
            lambda: report(egress=[pb.EgressResult(target=f"t{i}") for i in range(9)]),
        ),
        (
            "too_many_mounts",
            lambda: report(mounts=[pb.MountResult(path=f"/m{i}") for i in range(5)]),
        ),
        ("message_too_large", lambda: report(agent_version="x" * 70 * 1024)),
    ],
)
async def test_rejects_invalid_report_with_reason_and_counts_it(
    collector: CollectorService, reason: str, message: object
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await send(collector, message())  # type: ignore[operator]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in (caught.value.details() or "")
    metrics = await ascrape(f"http://127.0.0.1:{collector.http_port}/metrics")
    assert sample(metrics, "preflight_reports_rejected_total", reason=reason) == 1.0
    # The collector keeps serving valid reports afterwards.
    await send(collector, report(name="healthy"))


async def test_rejects_malformed_bytes(collector: CollectorService) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await send_raw(collector, b"\xff\xff\xff\xff not protobuf")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed" in (caught.value.details() or "")
    metrics = await ascrape(f"http://127.0.0.1:{collector.http_port}/metrics")
    assert sample(metrics, "preflight_reports_rejected_total", reason="malformed") == 1.0


async def test_sequence_going_backwards_is_rejected_but_a_new_instance_may_restart(
    collector: CollectorService,
) -> None:
    await send(collector, report(sequence=5))
    await send(collector, report(sequence=5))  # a retry of the same report is idempotent
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await send(collector, report(sequence=4))
    assert "sequence_regressed" in (caught.value.details() or "")
    await send(collector, report(sequence=1, instance="i2"))  # the agent restarted
    state = collector.state.snapshot(0)
    node = state.node("node-a")
    assert node is not None and node.report.instance_id == "i2"


async def test_standard_health_service_reports_serving(collector: CollectorService) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = await stub.Check(health_pb2.HealthCheckRequest(service="preflight.v1.Collector"))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_a_node_silent_past_forget_after_disappears_from_state_and_metrics() -> None:
    from collector.config import LimitsConfig
    from collector.exposition import Exposition
    from collector.published import Published
    from collector.state import ClusterState

    state = ClusterState(
        LimitsConfig(), heartbeat_interval=10, stale_after_heartbeats=3, forget_after=100
    )

    def at(name: str, now: float) -> pb.NodeReport:
        # Sent on the same (fake) clock: a sent_at decades from `now` is refused as implausible.
        message = report(name=name)
        message.sent_at.FromSeconds(int(now))
        return message

    state.accept(at("gone", 1000.0), now=1000.0)
    state.accept(at("stays", 1090.0), now=1090.0)
    exposition = Exposition()

    def rendered(now: float) -> str:
        return exposition.render(
            Published(state=state.snapshot(now), verdicts=(), ready=())
        ).decode()

    stale = rendered(1050.0)
    assert 'preflight_agent_up{node="gone"} 0.0' in stale  # stale first: still shown as down
    forgotten = rendered(1101.0)
    assert 'node="gone"' not in forgotten
    assert 'preflight_agent_up{node="stays"} 1.0' in forgotten
