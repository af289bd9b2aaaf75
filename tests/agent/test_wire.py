"""agent.wire against a real grpcio server: TLS, metadata, deadlines, status, reconnects.

The server is grpc.aio (what the collector runs) with raw-bytes handlers, so each test
sees exactly what crossed the wire; TLS uses a private CA made by trustme. The e2e tests
(real collector and agent processes) are the rest of the interop proof.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
import trustme

from agent.config import CollectorTls
from agent.identity import client_ssl_context
from agent.wire import Channel, RpcError, StatusCode, parse_target
from agent.wire.framing import grpc_timeout

SERVER_NAME = "collector.preflight.test"
Handler = Callable[[bytes, grpc.aio.ServicerContext], Any]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A grpc.aio server with handlers for /t.T/<name>, on a fixed port (restartable)."""

    def __init__(
        self, handlers: dict[str, Handler], port: int, tls: tuple[bytes, bytes] | None = None
    ) -> None:
        self.handlers = handlers
        self.port = port
        self.tls = tls
        self.options: list[tuple[str, Any]] = [("grpc.so_reuseport", 0)]
        self.server: grpc.aio.Server | None = None
        self.peers: list[str] = []

    async def start(self) -> None:
        def wrap(handler: Handler) -> Any:
            async def call(request: bytes, context: grpc.aio.ServicerContext) -> Any:
                self.peers.append(context.peer())
                return await handler(request, context)

            return grpc.unary_unary_rpc_method_handler(call)

        server = grpc.aio.server(options=self.options)
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "t.T", {n: wrap(h) for n, h in self.handlers.items()}
                ),
            )
        )
        address = f"127.0.0.1:{self.port}"
        if self.tls is None:
            server.add_insecure_port(address)
        else:
            server.add_secure_port(address, grpc.ssl_server_credentials([self.tls]))
        await server.start()
        self.server = server

    async def stop(self, grace: float | None = None) -> None:
        if self.server is not None:
            await self.server.stop(grace)
            self.server = None


async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b"echo:" + request


async def metadata(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    md = {k: v for k, v in context.invocation_metadata() or ()}
    remaining = context.time_remaining()
    return f"{md.get('authorization', '-')}|{remaining:.3f}".encode()


async def slow(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await asyncio.sleep(float(request.decode()))
    return b"late"


async def invalid(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "node name 'ü' is not valid: 100% sure")
    raise AssertionError("unreachable")


async def big(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return bytes(range(256)) * (int(request.decode()) // 256)


async def size(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return f"{len(request)}:{request.count(b'x')}".encode()


HANDLERS: dict[str, Handler] = {
    "Echo": echo,
    "Metadata": metadata,
    "Slow": slow,
    "Invalid": invalid,
    "Big": big,
    "Size": size,
}


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    s = Server(HANDLERS, free_port())
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def channel(server: Server) -> AsyncIterator[Channel]:
    c = Channel(f"127.0.0.1:{server.port}")
    yield c
    await c.close()


async def test_calls_reuse_one_connection(server: Server, channel: Channel) -> None:
    for i in range(5):
        assert await channel.unary("/t.T/Echo", b"%d" % i, timeout=5) == b"echo:%d" % i
    assert channel.connects == 1
    assert len(set(server.peers)) == 1  # one client port: one TCP connection


async def test_bearer_metadata_and_deadline_reach_the_server(channel: Channel) -> None:
    answer = await channel.unary(
        "/t.T/Metadata", b"", timeout=7.5, metadata=(("authorization", "Bearer tok.en"),)
    )
    token, remaining = answer.decode().split("|")
    assert token == "Bearer tok.en"
    assert 0 < float(remaining) <= 7.5  # the server read our grpc-timeout


async def test_deadline_exceeded_and_the_connection_stays(channel: Channel) -> None:
    with pytest.raises(RpcError) as caught:
        await channel.unary("/t.T/Slow", b"3", timeout=0.3)
    assert caught.value.code() == StatusCode.DEADLINE_EXCEEDED
    # The server is alive (it sent SETTINGS): the connection is reused, not dropped.
    assert await channel.unary("/t.T/Echo", b"x", timeout=5) == b"echo:x"
    assert channel.connects == 1


async def test_status_and_percent_encoded_message_from_the_server(channel: Channel) -> None:
    with pytest.raises(RpcError) as caught:
        await channel.unary("/t.T/Invalid", b"", timeout=5)
    assert caught.value.code() == StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "node name 'ü' is not valid: 100% sure"
    with pytest.raises(RpcError) as missing:
        await channel.unary("/t.T/Nope", b"", timeout=5)  # trailers-only, from grpcio
    assert missing.value.code() == StatusCode.UNIMPLEMENTED


async def test_big_messages_both_ways_respect_flow_control(channel: Channel) -> None:
    # Far over the 64 KiB initial windows: both sides must send WINDOW_UPDATEs.
    answer = await channel.unary("/t.T/Big", b"%d" % (3 * 1024 * 1024), timeout=30)
    assert answer == bytes(range(256)) * (3 * 1024 * 1024 // 256)
    assert await channel.unary("/t.T/Size", b"x" * 2_000_000, timeout=30) == b"2000000:2000000"


async def test_a_response_over_the_message_limit_is_resource_exhausted(server: Server) -> None:
    small = Channel(f"127.0.0.1:{server.port}", max_message_bytes=100_000)
    try:
        with pytest.raises(RpcError) as caught:
            await small.unary("/t.T/Big", b"200000", timeout=10)
        assert caught.value.code() == StatusCode.RESOURCE_EXHAUSTED
        assert await small.unary("/t.T/Big", b"99840", timeout=10) == bytes(range(256)) * 390
    finally:
        await small.close()


async def test_server_restart_is_unavailable_then_reconnected(
    server: Server, channel: Channel
) -> None:
    assert await channel.unary("/t.T/Echo", b"1", timeout=5) == b"echo:1"
    await server.stop()
    with pytest.raises(RpcError) as caught:
        await channel.unary("/t.T/Echo", b"2", timeout=5)
    assert caught.value.code() == StatusCode.UNAVAILABLE
    assert not await channel.wait_ready(0.3)  # nobody listens
    await server.start()
    assert await channel.wait_ready(10)
    assert await channel.unary("/t.T/Echo", b"3", timeout=5) == b"echo:3"
    assert channel.connects == 2


async def test_goaway_lets_the_call_in_flight_finish_and_the_next_dials_anew(
    server: Server, channel: Channel
) -> None:
    assert await channel.unary("/t.T/Echo", b"1", timeout=5) == b"echo:1"
    in_flight = asyncio.create_task(channel.unary("/t.T/Slow", b"0.5", timeout=10))
    await asyncio.sleep(0.2)
    stopping = asyncio.create_task(server.stop(grace=5))  # sends GOAWAY, waits for calls
    assert await in_flight == b"late"
    await stopping
    assert not channel.connected
    await server.start()
    assert await channel.unary("/t.T/Echo", b"2", timeout=5) == b"echo:2"
    assert channel.connects == 2


async def test_server_keepalive_pings_are_answered() -> None:
    s = Server(HANDLERS, free_port())
    # The server pings every 200 ms and closes a connection that does not answer in 300.
    s.options += [
        ("grpc.keepalive_time_ms", 200),
        ("grpc.keepalive_timeout_ms", 300),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    await s.start()
    c = Channel(f"127.0.0.1:{s.port}")
    try:
        assert await c.unary("/t.T/Echo", b"a", timeout=5) == b"echo:a"
        await asyncio.sleep(1.5)
        assert await c.unary("/t.T/Echo", b"b", timeout=5) == b"echo:b"
        assert c.connects == 1
    finally:
        await c.close()
        await s.stop()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@contextlib.asynccontextmanager
async def tls_server(ca: trustme.CA) -> AsyncIterator[Server]:
    cert = ca.issue_cert(SERVER_NAME)
    chain = b"".join(p.bytes() for p in cert.cert_chain_pems)
    s = Server(HANDLERS, free_port(), tls=(cert.private_key_pem.bytes(), chain))
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


async def test_tls_with_a_private_ca_and_server_name(ca: trustme.CA, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    tls = CollectorTls(ca_file=tmp_path / "ca.pem", server_name=SERVER_NAME)
    async with tls_server(ca) as s:
        # Dialled by IP; verified (and SNI sent) for the name the certificate carries.
        c = Channel(
            f"127.0.0.1:{s.port}", ssl_context=client_ssl_context(tls), server_name=SERVER_NAME
        )
        try:
            assert await c.unary("/t.T/Echo", b"s", timeout=5) == b"echo:s"
        finally:
            await c.close()
        wrong_name = Channel(
            f"127.0.0.1:{s.port}", ssl_context=client_ssl_context(tls), server_name="other.test"
        )
        with pytest.raises(RpcError) as caught:
            await wrong_name.unary("/t.T/Echo", b"s", timeout=5)
        assert caught.value.code() == StatusCode.UNAVAILABLE
        assert "certificate" in caught.value.details()


async def test_tls_with_the_wrong_ca_fails(ca: trustme.CA, tmp_path: Path) -> None:
    (tmp_path / "other.pem").write_bytes(trustme.CA().cert_pem.bytes())
    tls = CollectorTls(ca_file=tmp_path / "other.pem", server_name=SERVER_NAME)
    async with tls_server(ca) as s:
        c = Channel(
            f"127.0.0.1:{s.port}", ssl_context=client_ssl_context(tls), server_name=SERVER_NAME
        )
        with pytest.raises(RpcError) as caught:
            await c.unary("/t.T/Echo", b"s", timeout=5)
        assert caught.value.code() == StatusCode.UNAVAILABLE
        assert "certificate verify failed" in caught.value.details()
        # Plaintext to a TLS port is no gRPC server either.
        plain = Channel(f"127.0.0.1:{s.port}")
        with pytest.raises(RpcError) as refused:
            await plain.unary("/t.T/Echo", b"s", timeout=3)
        assert refused.value.code() in (StatusCode.UNAVAILABLE, StatusCode.INTERNAL)
        await plain.close()


async def test_a_silent_peer_times_out_and_the_dead_connection_is_dropped() -> None:
    # A TCP listener that accepts and never says a byte (not even SETTINGS): half-open.
    accepted: list[asyncio.StreamWriter] = []

    async def hold(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(w)

    listener = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    c = Channel(f"127.0.0.1:{port}")
    try:
        for _ in range(2):
            with pytest.raises(RpcError) as caught:
                await c.unary("/t.T/Echo", b"s", timeout=0.3)
            assert caught.value.code() == StatusCode.DEADLINE_EXCEEDED
        assert c.connects == 2  # the second call did not trust the silent connection
    finally:
        await c.close()
        for w in accepted:
            w.close()
        listener.close()


def test_targets_as_grpcio_spells_them() -> None:
    assert parse_target("collector:9751") == ("tcp", "collector", 9751)
    assert parse_target("ipv4:10.0.0.5:9751") == ("tcp", "10.0.0.5", 9751)
    assert parse_target("ipv6:[fd00::5]:9751") == ("tcp", "fd00::5", 9751)
    assert parse_target("[::1]:1") == ("tcp", "::1", 1)
    assert parse_target("dns:///svc.ns:9751") == ("tcp", "svc.ns", 9751)
    assert parse_target("unix:/run/c.sock") == ("unix", "/run/c.sock", 0)
    for bad in ("collector", "host:0", "host:99999", ":9751", "unix:"):
        with pytest.raises(ValueError):
            parse_target(bad)


def test_grpc_timeout_uses_at_most_eight_digits() -> None:
    assert grpc_timeout(5) == "5000000u"
    assert grpc_timeout(0.0001) == "100u"
    assert grpc_timeout(500) == "500000m"
    assert grpc_timeout(10**6) == "1000000S"
    assert all(len(grpc_timeout(s)) <= 9 for s in (0, 1e-9, 1, 99.9, 1e5, 1e8, 1e12))
