"""Report on the collector's gRPC handler threads (collector/ingest.py): concurrency.

Many agents at once, from several threads and channels: every accepted report lands,
once, in a consistent state, and the per-node rate limit spends each token once. An
agent whose token is not yet reviewed waits on the event loop for its TokenReview
(kmock, held pending): meanwhile the loop keeps serving HTTP and the handler threads
keep admitting agents already reviewed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import grpc
import grpc.aio
import pytest

from collector.config import (
    AuthConfig,
    CollectorConfig,
    KubernetesConfig,
    LimitsConfig,
    ListenConfig,
)
from collector.ingest import GRPC_THREADS
from collector.service import CollectorService
from preflight.v1 import report_pb2 as pb
from preflight.v1 import report_pb2_grpc as pb_grpc
from tests.support.kubeauth import FakeAuthApi, auth_api
from tests.support.metrics import ascrape, sample

SENDERS = 8
NEWCOMERS = 3


def report(name: str, sequence: int, instance: str = "i1") -> pb.NodeReport:
    message = pb.NodeReport(node_name=name, instance_id=instance, sequence=sequence)
    message.sent_at.GetCurrentTime()
    message.egress.add(target="t", outcome=pb.OUTCOME_UP).started_at.GetCurrentTime()
    return message


async def in_threads(count: int, work: Callable[[int], None]) -> None:
    """Runs work(0) … work(count - 1) on `count` threads at once, released together."""
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait()
            work(index)
        except BaseException as error:  # re-raised below, on the test's side
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    # The collector serves on this loop (authentication, HTTP): wait off it.
    await asyncio.to_thread(lambda: [t.join(60) for t in threads])
    assert not any(t.is_alive() for t in threads)
    if errors:
        raise errors[0]


@pytest.fixture
async def service() -> AsyncIterator[CollectorService]:
    config = CollectorConfig(
        listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"),
        heartbeat_interval=30.0,
        # The bucket refills once an hour: within a test, a node has exactly its burst.
        limits=LimitsConfig(min_report_interval=3600.0, report_burst=10),
    )
    svc = CollectorService(config)
    await svc.start()
    yield svc
    await svc.stop()


async def test_concurrent_reports_from_many_channels_all_land_once(
    service: CollectorService,
) -> None:
    nodes_per_sender, sequences = 12, 6
    answers: dict[int, list[str]] = {}

    def sender(index: int) -> None:
        # One channel per thread, several calls in flight on each (futures).
        with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
            stub = pb_grpc.CollectorStub(channel)
            codes = []
            for sequence in range(1, sequences + 1):
                calls = [
                    stub.Report.future(report(f"n{index}-{i}", sequence), timeout=30)
                    for i in range(nodes_per_sender)
                ]
                for call in calls:
                    codes.append(call.code().name)
            answers[index] = codes

    before = service.state.snapshot(time.time()).reports_received
    await in_threads(SENDERS, sender)
    sent = SENDERS * nodes_per_sender * sequences
    assert [c for codes in answers.values() for c in codes] == ["OK"] * sent
    snapshot = service.state.snapshot(time.time())
    assert snapshot.reports_received - before == sent
    assert len(snapshot.nodes) == SENDERS * nodes_per_sender
    # Each node holds its last report: no update lost, none applied out of order.
    assert {n.report.sequence for n in snapshot.nodes} == {sequences}
    assert dict(snapshot.rejected)["sequence_regressed"] == 0
    # What the state accounts for is what it holds (the byte bound stays exact).
    state = service.state
    # (The state holds each report's bytes, and counts their length.)
    held = {n.name: len(n.raw) for n in snapshot.nodes}
    assert held == {n.name: n.report.ByteSize() for n in snapshot.nodes}
    assert state._bytes == sum(held.values())
    metrics = await ascrape(f"http://127.0.0.1:{service.http_port}/metrics")
    assert sample(metrics, "preflight_reports_received_total") == float(sent)


async def test_a_nodes_burst_is_spent_once_across_threads(service: CollectorService) -> None:
    per_sender = 5
    codes: list[str] = []
    lock = threading.Lock()

    def sender(index: int) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
            stub = pb_grpc.CollectorStub(channel)
            # Another instance per report: each supersedes, none is a late retry.
            calls = [
                stub.Report.future(report("busy", 1, instance=f"i{index}-{k}"), timeout=30)
                for k in range(per_sender)
            ]
            with lock:
                codes.extend(call.code().name for call in calls)

    await in_threads(SENDERS, sender)
    burst = service.state.limits.report_burst
    assert codes.count("OK") == burst
    assert codes.count("RESOURCE_EXHAUSTED") == SENDERS * per_sender - burst
    metrics = await ascrape(f"http://127.0.0.1:{service.http_port}/metrics")
    limited = sample(metrics, "preflight_reports_rejected_total", reason="rate_limited")
    assert limited == float(SENDERS * per_sender - burst)


@pytest.fixture
async def api() -> AsyncIterator[FakeAuthApi]:
    async with auth_api() as fake:
        yield fake


async def test_a_pending_token_review_stalls_neither_http_nor_reviewed_agents(
    api: FakeAuthApi,
) -> None:
    config = CollectorConfig(
        listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"),
        heartbeat_interval=1.0,
        kubernetes=KubernetesConfig(mode="none"),
        auth=AuthConfig(mode="kubernetes", review_timeout=60.0),
    )
    service = CollectorService(config, kube_configuration=api.configuration())
    await service.start()
    try:
        address = f"127.0.0.1:{service.grpc_port}"
        known = api.issue("gpu-node-1")
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.CollectorStub(channel)

            async def send(name: str, sequence: int, token: str) -> pb.ReportAck:
                metadata = (("authorization", f"Bearer {token}"),)
                return await stub.Report(report(name, sequence), timeout=60, metadata=metadata)

            await send("gpu-node-1", 1, known)
            api.review_gate = gate = asyncio.Event()
            # Fewer than the handler threads (one is left for the reviewed agent) and than
            # the reviewer's own pool (each of them reaches the API).
            newcomers = [
                asyncio.create_task(send(f"gpu-node-{n}", 1, api.issue(f"gpu-node-{n}")))
                for n in range(2, 2 + NEWCOMERS)
            ]
            while len(api.reviews) < 1 + len(newcomers):
                await asyncio.sleep(0.01)  # each newcomer's review reached the API
            # Their handler threads wait on this loop's review: the loop still serves.
            async with aiohttp.ClientSession() as http:
                for path in ("/healthz", "/readyz", "/api/v1/verdicts", "/metrics") * 5:
                    url = f"http://127.0.0.1:{service.http_port}{path}"
                    async with http.get(url) as response:
                        assert response.status == 200, path
            for sequence in (2, 3, 4):
                await send("gpu-node-1", sequence, known)
            assert not any(task.done() for task in newcomers)
            gate.set()
            await asyncio.gather(*newcomers)
        assert len(api.reviews) == 1 + len(newcomers)  # one review per token
        nodes = {n.name: n.report.sequence for n in service.state.snapshot(time.time()).nodes}
        assert nodes == {"gpu-node-1": 4} | {f"gpu-node-{n}": 1 for n in range(2, 2 + NEWCOMERS)}
    finally:
        if api.review_gate is not None:
            api.review_gate.set()
        await service.stop()


async def test_calls_that_never_send_their_report_cannot_hold_every_thread(
    service: CollectorService,
) -> None:
    # A short watch for this test (the shipped one waits MESSAGE_WAIT_SECONDS).
    service.servicer.watch.limit = 0.5
    release = asyncio.Event()

    async def nothing() -> AsyncIterator[bytes]:
        await release.wait()  # headers sent, the message never
        yield b""

    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        stall = channel.stream_unary("/preflight.v1.Collector/Report")
        # As many as there are handler threads: each takes one while it waits.
        stalled = [stall(nothing(), timeout=60) for _ in range(GRPC_THREADS)]
        await asyncio.sleep(0)
        ack = await pb_grpc.CollectorStub(channel).Report(report("patient", 1), timeout=60)
        assert ack.heartbeat_interval_seconds == 30.0
        outcomes = await asyncio.gather(*stalled, return_exceptions=True)
        release.set()
    assert all(isinstance(o, grpc.aio.AioRpcError) for o in outcomes)
    assert {o.code() for o in outcomes} == {grpc.StatusCode.CANCELLED}  # type: ignore[union-attr]
    # The client sees the cancellation before the handler thread has counted it (the
    # thread wakes from its read after gRPC cancelled the call): under CPU load the count
    # lags the answers, so it is polled, with a deadline far beyond any honest lag.
    deadline = time.monotonic() + 30.0
    while (
        malformed := dict(service.state.summary(time.time()).rejected)["malformed"]
    ) < GRPC_THREADS and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert malformed == GRPC_THREADS
    snapshot = service.state.snapshot(time.time())
    assert [n.name for n in snapshot.nodes] == ["patient"]
