"""Validation at the border, against a real collector: each hostile report of issue 10.

Every report here once stopped the judging, blanked a surface or went uncounted. Now
each is refused with INVALID_ARGUMENT and its reason (and counted), or — where the
data is legitimate — stored and shown, and every surface keeps answering.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from urllib.parse import quote

import aiohttp
import grpc
import grpc.aio
import pytest

from collector.config import CollectorConfig, LimitsConfig, ListenConfig
from collector.service import CollectorService
from collector.validation import TIMESTAMP_MAX_SECONDS, TIMESTAMP_MIN_SECONDS
from preflight.v1 import report_pb2 as pb
from tests.support.ingest_calls import report, send, send_raw
from tests.support.metrics import ascrape, sample


async def get(collector: CollectorService, path: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{collector.http_port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def strict(text: str) -> object:
    def refuse(name: str) -> object:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


async def every_surface_answers(collector: CollectorService) -> None:
    """Every page answers 200, JSON is strict JSON, and so is every node's own page."""
    for path in ("/metrics", "/api/v1/verdicts", "/api/v1/nodes", "/"):
        status, body = await get(collector, path)
        assert status == 200, (path, body[:500])
        if path.startswith("/api"):
            strict(body)
    _, body = await get(collector, "/api/v1/nodes")
    for entry in strict(body)["nodes"]:  # type: ignore[index]
        status, detail = await get(collector, "/api/v1/nodes/" + quote(entry["node"], safe=""))
        assert status == 200, detail[:500]
        strict(detail)


def with_peer_written_at(seconds: int) -> pb.NodeReport:
    message = report(name="hostile")
    mount = message.mounts.add(path="/mnt/nas", state=pb.MOUNT_STATE_MOUNTED)
    mount.marker.nonce = "n"
    peer = mount.marker.peers.add(node_name="healthy", nonce="m")
    peer.written_at.seconds = seconds
    return message


def with_not_after(seconds: int) -> pb.NodeReport:
    message = report(name="hostile")
    e = message.egress.add(target="t", outcome=pb.OUTCOME_UP)
    e.certificate.not_after.seconds = seconds
    return message


def with_started_at(seconds: int, nanos: int = 0) -> pb.NodeReport:
    message = report(name="hostile")
    e = message.egress.add(target="t", outcome=pb.OUTCOME_UP)
    e.started_at.seconds = seconds
    e.started_at.nanos = nanos
    return message


def with_sent_at(seconds: int) -> pb.NodeReport:
    message = report(name="hostile")
    message.sent_at.seconds = seconds
    return message


def with_total_seconds(value: float) -> pb.NodeReport:
    message = report(name="hostile")
    message.egress.add(target="t", outcome=pb.OUTCOME_UP, total_seconds=value)
    return message


def with_targets(*names: str) -> pb.NodeReport:
    message = report(name="hostile")
    for name in names:
        message.egress.add(target=name, outcome=pb.OUTCOME_UP)
    return message


def with_phases(*phases: int) -> pb.NodeReport:
    message = report(name="hostile")
    e = message.egress.add(target="t", outcome=pb.OUTCOME_DOWN)
    for phase in phases:
        e.phases.add(phase=phase, duration_seconds=0.1)  # type: ignore[arg-type]
    return message


def with_gpus(*indexes: int) -> pb.NodeReport:
    message = report(name="hostile")
    for i in indexes:
        message.gpus.devices.add(index=i, uuid=f"GPU-{i}")
    return message


def with_dns_addresses(count: int) -> pb.NodeReport:
    message = report(name="hostile")
    e = message.egress.add(target="t", outcome=pb.OUTCOME_UP)
    e.dns.addresses.extend(f"10.0.{i // 256}.{i % 256}" for i in range(count))
    return message


REFUSED: list[tuple[str, Callable[[], pb.NodeReport]]] = [
    # The first finding: a peer marker's written_at beyond protobuf's range.
    ("invalid_timestamp", lambda: with_peer_written_at(TIMESTAMP_MAX_SECONDS + 1)),
    ("invalid_timestamp", lambda: with_peer_written_at(TIMESTAMP_MIN_SECONDS - 1)),
    ("invalid_timestamp", lambda: with_not_after(2**62)),
    # started_at at the last representable instant: in range, but absurd as an event time.
    ("invalid_timestamp", lambda: with_started_at(TIMESTAMP_MAX_SECONDS, 999_999_999)),
    ("invalid_timestamp", lambda: with_started_at(0, -1)),
    ("invalid_timestamp", lambda: with_sent_at(TIMESTAMP_MAX_SECONDS + 10)),
    ("invalid_timestamp", lambda: with_sent_at(-(2**40))),
    ("invalid_number", lambda: with_total_seconds(math.nan)),
    ("invalid_number", lambda: with_total_seconds(math.inf)),
    ("invalid_number", lambda: with_total_seconds(-1.0)),
    ("duplicate_name", lambda: with_targets("gcr.io", "gcr.io")),
    ("duplicate_name", lambda: with_phases(pb.PHASE_CONNECT, pb.PHASE_CONNECT)),
    # Two phase numbers this collector does not know would both be labelled "unknown".
    ("duplicate_name", lambda: with_phases(97, 98)),
    ("duplicate_name", lambda: with_gpus(0, 0)),
    ("label_too_long", lambda: with_targets("t" * 257)),
    ("label_too_long", lambda: report(name="hostile", agent_version="v" * 300)),
    ("too_many_items", lambda: with_dns_addresses(1025)),
]


@pytest.fixture
async def default_limits() -> object:
    config = CollectorConfig(
        listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"),
        heartbeat_interval=1.0,
        limits=LimitsConfig(max_nodes=3),
    )
    service = CollectorService(config)
    await service.start()
    yield service
    await service.stop()


@pytest.mark.parametrize(("reason", "build"), REFUSED)
async def test_hostile_report_is_refused_counted_and_harmless(
    default_limits: CollectorService, reason: str, build: Callable[[], pb.NodeReport]
) -> None:
    collector = default_limits
    await send(collector, report(name="healthy"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await send(collector, build())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in (caught.value.details() or "")
    metrics = await ascrape(f"http://127.0.0.1:{collector.http_port}/metrics")
    assert sample(metrics, "preflight_reports_rejected_total", reason=reason) == 1.0
    assert sample(metrics, "preflight_agent_up", node="hostile") is None
    await collector.observe()
    await every_surface_answers(collector)


async def test_certificate_dates_far_away_are_facts_not_errors(
    default_limits: CollectorService,
) -> None:
    # RFC 5280 writes "no expiry" as 9999-12-31T23:59:59Z: a real certificate date.
    await send(default_limits, with_not_after(TIMESTAMP_MAX_SECONDS))
    await default_limits.observe()
    await every_surface_answers(default_limits)
    metrics = await ascrape(f"http://127.0.0.1:{default_limits.http_port}/metrics")
    expiry = sample(metrics, "preflight_egress_tls_cert_not_after_timestamp_seconds", target="t")
    assert expiry == float(TIMESTAMP_MAX_SECONDS)


async def test_clock_skew_is_reported_not_refused(default_limits: CollectorService) -> None:
    message = report(name="skewed")
    message.sent_at.seconds += 3 * 86400  # three days ahead: a broken clock, not an attack
    await send(default_limits, message)
    metrics = await ascrape(f"http://127.0.0.1:{default_limits.http_port}/metrics")
    skew = sample(metrics, "preflight_agent_clock_skew_seconds", node="skewed")
    assert skew is not None and skew > 2 * 86400


async def test_long_free_text_is_cut_not_refused(default_limits: CollectorService) -> None:
    message = report(name="chatty")
    message.egress.add(target="t", outcome=pb.OUTCOME_DOWN, message="m" * 5000)
    await send(default_limits, message)
    status, body = await get(default_limits, "/api/v1/nodes/chatty")
    assert status == 200
    text = strict(body)["targets"][0]["message"]  # type: ignore[index]
    assert len(text) == LimitsConfig().max_text_length and text.endswith("…")


async def test_unknown_enum_values_are_kept_as_unknown(default_limits: CollectorService) -> None:
    message = report(name="newer-agent")
    message.egress.add(target="t", outcome=pb.OUTCOME_DOWN, reason=77)  # type: ignore[arg-type]
    message.mounts.add(path="/mnt/nas", state=42)  # type: ignore[arg-type]
    await send(default_limits, message)
    await default_limits.observe()
    await every_surface_answers(default_limits)
    metrics = await ascrape(f"http://127.0.0.1:{default_limits.http_port}/metrics")
    labels = {"node": "newer-agent", "target": "t", "reason": "unknown"}
    assert sample(metrics, "preflight_egress_failure", **labels) == 1.0
    assert sample(metrics, "preflight_mount_up", node="newer-agent", path="/mnt/nas") == 0.0


async def test_a_report_over_grpcs_own_ceiling_is_counted(collector: CollectorService) -> None:
    # The conftest collector allows 64 KiB; gRPC itself drops anything over 4x that.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await send_raw(collector, report(agent_version="x" * (300 * 1024)).SerializeToString())
    assert caught.value.code() in (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    metrics = await ascrape(f"http://127.0.0.1:{collector.http_port}/metrics")
    assert sample(metrics, "preflight_reports_rejected_total", reason="message_too_large") == 1.0
    await send(collector, report(name="healthy"))


async def test_max_nodes_bounds_the_state(default_limits: CollectorService) -> None:
    for name in ("n1", "n2", "n3"):
        await send(default_limits, report(name=name))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await send(default_limits, report(name="n4"))
    assert "too_many_nodes" in (caught.value.details() or "")
    await send(default_limits, report(name="n2", sequence=2))  # known nodes still report
    metrics = await ascrape(f"http://127.0.0.1:{default_limits.http_port}/metrics")
    assert sample(metrics, "preflight_reports_rejected_total", reason="too_many_nodes") == 1.0
    assert sample(metrics, "preflight_agent_up", node="n4") is None


async def test_max_state_bytes_bounds_memory_whatever_the_names() -> None:
    config = CollectorConfig(
        listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"),
        limits=LimitsConfig(max_state_bytes=1024 * 1024, max_text_length=65536),
    )
    service = CollectorService(config)
    await service.start()
    try:

        def bulky(name: str, sequence: int = 1) -> pb.NodeReport:
            message = report(name=name, sequence=sequence)
            for i in range(10):
                message.probe_errors.add(probe=f"p{i}", message="e" * 60_000)
            return message

        await send(service, bulky("big-1"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await send(service, bulky("big-2"))
        assert "state_full" in (caught.value.details() or "")
        await send(service, bulky("big-1", sequence=2))  # replacing its own report fits
        service.state.forget("big-1")
        await send(service, bulky("big-2"))  # what a forgotten node held is free again
        metrics = await ascrape(f"http://127.0.0.1:{service.http_port}/metrics")
        assert sample(metrics, "preflight_reports_rejected_total", reason="state_full") == 1.0
    finally:
        await service.stop()
