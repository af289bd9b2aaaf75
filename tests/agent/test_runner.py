"""The agent's runner and client against a real collector: deadlines, push-on-change, backoff.

Probes are injected here so the schedule itself is under test; the real probes
have their own tests and run end to end in tests/e2e.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator

import pytest

from agent.client import ReportClient
from agent.config import AgentConfig
from agent.probes import results as r
from agent.runner import Agent, ProbeSet, run_cycle
from collector.config import CollectorConfig, ListenConfig
from collector.service import CollectorService
from preflight.v1 import report_pb2 as pb
from tests.support.servers import free_port


class Switch:
    """An egress outcome the test flips while the agent runs."""

    def __init__(self) -> None:
        self.up = True
        self.calls = 0


def probes_for(switch: Switch, *, hang: bool = False, explode: bool = False) -> ProbeSet:
    release = threading.Event()

    async def hardware() -> r.HardwareFacts:
        if explode:
            raise RuntimeError("cpuinfo unreadable")
        return r.HardwareFacts(logical_cores=4, memory_total_bytes=8 << 30)

    async def gpus() -> r.GpuFacts:
        if hang:
            await asyncio.to_thread(release.wait, 5)
        return r.GpuFacts()

    async def mounts() -> list[r.MountResult]:
        return []

    async def egress() -> list[r.EgressResult]:
        switch.calls += 1
        reason = None if switch.up else "connect_refused"
        return [r.EgressResult(target="t", url="https://t/", up=switch.up, reason=reason)]

    return ProbeSet.of(
        hardware=(hardware, 1.0), gpus=(gpus, 0.3), mounts=(mounts, 1.0), egress=(egress, 1.0)
    )


async def test_a_raising_or_hanging_probe_becomes_data_not_a_crash() -> None:
    snapshot = await run_cycle(probes_for(Switch(), hang=True, explode=True))
    failures = {f.probe: f for f in snapshot.failures}
    assert failures["hardware"].timed_out is False
    assert "cpuinfo unreadable" in failures["hardware"].message
    assert failures["gpus"].timed_out is True
    assert snapshot.results["egress"][0].up  # the others still report
    assert set(snapshot.results) == {"mounts", "egress"}


@pytest.fixture
async def live() -> AsyncIterator[tuple[CollectorService, ReportClient, Agent, Switch]]:
    service = CollectorService(
        CollectorConfig(
            listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"), heartbeat_interval=0.6
        )
    )
    await service.start()
    config = AgentConfig(probe_interval=0.2, heartbeat_interval=10.0)
    client = ReportClient(f"127.0.0.1:{service.grpc_port}", timeout=2, max_backoff=0.5)
    switch = Switch()
    agent = Agent(config, "node-x", probes_for(switch), client.submit)
    client.on_ack = lambda ack: agent.adopt_heartbeat(ack.heartbeat_interval_seconds)
    tasks = [asyncio.create_task(client.run()), asyncio.create_task(agent.run())]
    yield service, client, agent, switch
    agent.stop()
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await client.close()
    await service.stop()


async def wait_until(predicate: object, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


def latest(service: CollectorService) -> pb.NodeReport | None:
    node = service.state.snapshot(time.time()).node("node-x")
    return node.report if node else None


async def test_change_is_pushed_at_once_and_heartbeat_follows_the_collector(
    live: tuple[CollectorService, ReportClient, Agent, Switch],
) -> None:
    service, client, agent, switch = live
    await wait_until(lambda: latest(service) is not None)
    # The collector asked for a 0.6 s heartbeat in its ack; the agent adopted it.
    assert agent.heartbeat_interval == pytest.approx(0.6)
    switch.up = False
    await wait_until(lambda: latest(service).egress[0].outcome == pb.OUTCOME_DOWN)  # type: ignore[union-attr]
    report = latest(service)
    assert report is not None and report.egress[0].reason == pb.REASON_CONNECT_REFUSED
    # With nothing changing, heartbeats keep arriving, with increasing sequence numbers.
    first = report.sequence
    await wait_until(lambda: latest(service).sequence >= first + 2)  # type: ignore[union-attr]
    # Pushes happen on change or heartbeat, not on every 0.2 s probe cycle.
    assert client.delivered < switch.calls


async def test_collector_down_then_back_gets_the_latest_snapshot() -> None:
    port = free_port()
    config = CollectorConfig(
        listen=ListenConfig(grpc=f"127.0.0.1:{port}", http="127.0.0.1:0"), heartbeat_interval=30
    )
    client = ReportClient(f"127.0.0.1:{port}", timeout=1, max_backoff=0.5)
    sender = asyncio.create_task(client.run())
    for sequence in (1, 2, 3):  # only the newest survives while the collector is down
        client.submit(pb.NodeReport(node_name="n", instance_id="i", sequence=sequence))
        await asyncio.sleep(0.3)
    service = CollectorService(config)
    await service.start()
    try:
        # The collector stores the report before the client has read its ack: wait for both.
        await wait_until(
            lambda: (
                client.delivered >= 1 and service.state.snapshot(time.time()).node("n") is not None
            )
        )
        node = service.state.snapshot(time.time()).node("n")
        assert node is not None and node.report.sequence == 3
        assert client.delivered == 1
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        await client.close()
        await service.stop()


async def test_reports_bypass_a_dead_https_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "grpc_proxy"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    service = CollectorService(
        CollectorConfig(listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"))
    )
    await service.start()
    client = ReportClient(f"127.0.0.1:{service.grpc_port}", timeout=2, max_backoff=0.5)
    sender = asyncio.create_task(client.run())
    try:
        client.submit(pb.NodeReport(node_name="behind-proxy", instance_id="i", sequence=1))
        await wait_until(lambda: client.delivered == 1)
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        await client.close()
        await service.stop()


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    from agent.client import INITIAL_BACKOFF_SECONDS, backoff_delay

    for failures in range(1, 12):
        ceiling = min(5.0, INITIAL_BACKOFF_SECONDS * 2 ** (failures - 1))
        delays = {backoff_delay(failures, cap=5.0) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered: agents do not retry in lockstep
    assert max(backoff_delay(30, cap=5.0) for _ in range(50)) <= 5.0
