"""The agent's fan-out to collector replicas: every report to every address, each on its own.

Real collectors (CollectorService over real gRPC) on two loopback addresses with the same
port, as two pods behind a headless Service; the resolver is injected here (the real
system resolver with an /etc/hosts name runs in tests/e2e/test_two_collectors.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import grpc
import grpc.aio
import pytest

from agent.fanout import FanoutClient, grpc_target, split_host_port, system_resolve
from collector.config import CollectorConfig, ListenConfig
from collector.service import CollectorService
from preflight.v1 import report_pb2 as pb
from preflight.v1 import report_pb2_grpc as pb_grpc
from tests.support.servers import REPLICA_ADDRESSES, port_free_on_all

ADDRESSES = REPLICA_ADDRESSES


async def collector(ip: str, port: int) -> CollectorService:
    service = CollectorService(
        CollectorConfig(listen=ListenConfig(grpc=f"{ip}:{port}", http=f"{ip}:0"))
    )
    await service.start()
    return service


def report(node: str, sequence: int) -> pb.NodeReport:
    return pb.NodeReport(node_name=node, instance_id="i-1", sequence=sequence)


def seen(service: CollectorService, node: str) -> int:
    """The sequence the collector holds for `node` (0: none)."""
    entry = service.state.snapshot(time.time()).node(node)
    return entry.report.sequence if entry is not None else 0


async def wait_until(predicate: Callable[[], bool], limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


class Names:
    """An injected resolver whose answer the test changes."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)
        self.calls = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        assert host == "collectors.test"
        return list(self.addresses)


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[int, list[CollectorService]]]:
    port = port_free_on_all()
    services = [await collector(ip, port) for ip in ADDRESSES]
    yield port, services
    for service in services:
        with contextlib.suppress(Exception):
            await service.stop()


@contextlib.asynccontextmanager
async def running(client: FanoutClient) -> AsyncIterator[FanoutClient]:
    task = asyncio.create_task(client.run())
    try:
        yield client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()


async def test_every_report_reaches_every_replica(
    replicas: tuple[int, list[CollectorService]],
) -> None:
    port, services = replicas
    names = Names(*ADDRESSES)
    client = FanoutClient(
        f"collectors.test:{port}", timeout=2, max_backoff=0.5, resolve=names, resolve_interval=60
    )
    async with running(client):
        await wait_until(lambda: len(client.replicas) == 2)
        client.submit(report("node-a", 1))
        await wait_until(lambda: all(seen(s, "node-a") == 1 for s in services))
        client.submit(report("node-a", 2))
        await wait_until(lambda: all(seen(s, "node-a") == 2 for s in services))
    assert sorted(client.replicas) == []  # closed
    assert names.calls == 1


async def test_a_dead_replica_never_holds_back_the_live_one(
    replicas: tuple[int, list[CollectorService]],
) -> None:
    port, (first, second) = replicas
    client = FanoutClient(
        f"collectors.test:{port}", timeout=2, max_backoff=5, resolve=Names(*ADDRESSES)
    )
    async with running(client):
        client.submit(report("node-a", 1))
        await wait_until(lambda: seen(first, "node-a") == 1 and seen(second, "node-a") == 1)
        await first.stop()
        # The dead replica's client now backs off (up to 5 s); the live one gets each
        # report as soon as it is submitted, every time.
        for sequence in range(2, 7):
            client.submit(report("node-a", sequence))
            await wait_until(lambda s=sequence: seen(second, "node-a") == s)  # type: ignore[misc]
        dead = client.replicas[ADDRESSES[0]].client
        live = client.replicas[ADDRESSES[1]].client
        assert live.delivered == 6
        assert dead.delivered == 1
        # The dead one keeps only the newest report for when it is back.
        assert dead._latest is not None and dead._latest.sequence == 6
        restarted = await collector(ADDRESSES[0], port)
        try:
            await wait_until(lambda: seen(restarted, "node-a") == 6)
        finally:
            await restarted.stop()
    # Delivered to the restarted replica without another submit: the pending one.
    assert dead.delivered == 2


async def test_a_replica_that_never_answers_does_not_delay_the_other(
    replicas: tuple[int, list[CollectorService]],
) -> None:
    port, (first, _second) = replicas
    # A gRPC server that accepts the call and never answers, on the second address.
    hung = grpc.aio.server()

    class Hung(pb_grpc.CollectorServicer):
        async def Report(self, request: pb.NodeReport, context: object) -> pb.ReportAck:
            await asyncio.sleep(3600)
            raise AssertionError("unreachable")

    pb_grpc.add_CollectorServicer_to_server(Hung(), hung)
    hung_port = hung.add_insecure_port("127.0.0.4:0")
    await hung.start()
    try:
        names = Names(ADDRESSES[0])
        client = FanoutClient(f"collectors.test:{port}", timeout=30, max_backoff=1, resolve=names)
        async with running(client):
            await wait_until(lambda: len(client.replicas) == 1)
            # The hung server joins as a replica (its own port: a test-only target).
            client._add("hung", grpc_target("127.0.0.4", hung_port))
            for sequence in range(1, 6):
                client.submit(report("node-a", sequence))
                await wait_until(lambda s=sequence: seen(first, "node-a") == s)  # type: ignore[misc]
            assert client.replicas["hung"].client.delivered == 0
            assert client.replicas[ADDRESSES[0]].client.delivered == 5
    finally:
        await hung.stop(0)


async def test_resolving_again_adds_and_removes_replicas(
    replicas: tuple[int, list[CollectorService]],
) -> None:
    port, (first, second) = replicas
    names = Names(ADDRESSES[0])
    client = FanoutClient(
        f"collectors.test:{port}", timeout=2, max_backoff=0.5, resolve=names, resolve_interval=0.2
    )
    async with running(client):
        client.submit(report("node-a", 1))
        await wait_until(lambda: seen(first, "node-a") == 1)
        assert seen(second, "node-a") == 0
        # A second pod appears behind the name: it gets the latest report unasked.
        names.addresses = list(ADDRESSES)
        await wait_until(lambda: seen(second, "node-a") == 1)
        # The first pod goes away: its client is closed, the other keeps receiving.
        names.addresses = [ADDRESSES[1]]
        await wait_until(lambda: sorted(client.replicas) == [ADDRESSES[1]])
        client.submit(report("node-a", 2))
        await wait_until(lambda: seen(second, "node-a") == 2)
        assert seen(first, "node-a") == 1
        # A failing or empty answer keeps the replicas known.
        names.addresses = []
        calls = names.calls
        await wait_until(lambda: names.calls > calls + 1)
        assert sorted(client.replicas) == [ADDRESSES[1]]


async def test_newest_plan_from_any_replica_wins_without_flipping() -> None:
    acks: list[pb.ReportAck] = []
    client = FanoutClient("collectors.test:1", timeout=1, max_backoff=1, on_ack=acks.append)
    client._add("a", "ipv4:127.0.0.2:1")
    client._add("b", "ipv4:127.0.0.3:1")

    def ack(version: str) -> pb.ReportAck:
        return pb.ReportAck(heartbeat_interval_seconds=7, plan=pb.ProbePlan(version=version))

    client._ack("a", ack("v1"))
    client._ack("b", ack("v1"))
    client._ack("b", ack("v2"))  # b's profile changed: v2 is the newest
    client._ack("a", ack("v1"))  # a still on v1: not news, must not pull back
    client._ack("b", ack("v2"))
    client._ack("a", ack("v2"))  # a caught up
    assert [a.plan.version for a in acks] == ["v1", "v1", "v2", "", "", "v2"]
    assert all(a.heartbeat_interval_seconds == 7 for a in acks)
    await client.close()


async def test_ip_literal_is_one_endpoint_and_never_resolved() -> None:
    names = Names()
    client = FanoutClient("127.0.0.9:9751", timeout=1, max_backoff=1, resolve=names)
    await client.refresh()
    await client.refresh()
    assert list(client.replicas) == ["127.0.0.9:9751"]
    assert names.calls == 0
    await client.close()


def test_addresses_are_split_and_dialled_without_a_second_resolution() -> None:
    assert split_host_port("svc.ns.svc:9751") == ("svc.ns.svc", 9751)
    assert split_host_port("[::1]:9751") == ("::1", 9751)
    assert split_host_port("dns:///svc:9751") is None
    assert split_host_port("unix:/run/c.sock") is None
    assert grpc_target("10.0.0.5", 9751) == "ipv4:10.0.0.5:9751"
    assert grpc_target("fd00::5", 9751) == "ipv6:[fd00::5]:9751"


async def test_system_resolver_gives_every_address_once() -> None:
    addresses = await system_resolve("localhost", 9751)
    assert "127.0.0.1" in addresses
    assert len(addresses) == len(set(addresses))
