"""Real HTTPS servers on loopback for the egress tests, and the private PKI they use.

Servers run on an asyncio loop in a background thread, so one set can serve every test
of a module (tests get their own loops). Behaviours are those the probe must tell apart:
answering with a given status and headers, completing TLS and then never answering,
accepting TCP and never starting TLS, speaking plain HTTP where TLS is expected.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import trustme

T = TypeVar("T")


class LoopThread:
    """An asyncio loop in a daemon thread; `call` runs a coroutine on it and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def stop(self) -> None:
        async def cancel_handlers() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.call(cancel_handlers())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


@dataclass
class Behaviour:
    """How a server answers: respond, silent_after_tls, silent_tcp, plain_http or hangup."""

    mode: str = "respond"
    status: int = 200
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b"ok\n"
    requests: list[bytes] = field(default_factory=list)


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return b""


def _response(behaviour: Behaviour) -> bytes:
    lines = [f"HTTP/1.1 {behaviour.status} Test", f"Content-Length: {len(behaviour.body)}"]
    lines += [f"{name}: {value}" for name, value in behaviour.headers]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + behaviour.body


async def start_server(
    behaviour: Behaviour, context: ssl.SSLContext | None, host: str = "127.0.0.1", port: int = 0
) -> asyncio.Server:
    """A server with `behaviour`; TLS when `context` is given (except mode plain_http)."""
    hold: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if behaviour.mode in ("silent_after_tls", "silent_tcp"):
            hold.append(writer)  # keep the connection open, say nothing
            await reader.read()
            return
        if behaviour.mode == "hangup":  # read the request, close without a word
            await _read_head(reader)
            writer.close()
            return
        if behaviour.mode == "plain_http":
            # Like a real HTTP server fed a TLS ClientHello: answer 400 and hang up.
            await reader.read(1024)
            writer.write(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        head = await _read_head(reader)
        behaviour.requests.append(head)
        try:
            writer.write(_response(behaviour))
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    use_tls = context if behaviour.mode not in ("silent_tcp", "plain_http") else None
    return await asyncio.start_server(handle, host, port, ssl=use_tls)


def server_port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


@dataclass
class Pki:
    """A trusted test CA (written to ca_file) and a second CA nobody trusts."""

    ca: trustme.CA
    rogue: trustme.CA
    ca_file: Path
    rogue_file: Path

    @classmethod
    def create(cls, directory: Path) -> Pki:
        ca = trustme.CA(organization_unit_name="Preflight trusted test CA")
        rogue = trustme.CA(organization_unit_name="Preflight rogue inspection CA")
        ca_file, rogue_file = directory / "ca.pem", directory / "rogue.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        rogue.cert_pem.write_to_path(str(rogue_file))
        return cls(ca, rogue, ca_file, rogue_file)

    def server_context(
        self, *names: str, rogue: bool = False, expired: bool = False
    ) -> tuple[ssl.SSLContext, bytes]:
        """A server context for `names` and the DER of its leaf certificate."""
        issuer = self.rogue if rogue else self.ca
        kwargs: dict[str, Any] = {}
        if expired:
            kwargs["not_before"] = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
            kwargs["not_after"] = dt.datetime(2021, 1, 1, tzinfo=dt.UTC)
        leaf = issuer.issue_cert(*names, **kwargs)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(context)
        pem = leaf.cert_chain_pems[0].bytes().decode()
        return context, ssl.PEM_cert_to_DER_cert(pem)

    def write_leaf(self, directory: Path, stem: str, *names: str) -> tuple[Path, Path]:
        """A leaf from the trusted CA as cert-chain and key files (for other processes)."""
        leaf = self.ca.issue_cert(*names)
        cert, key = directory / f"{stem}.pem", directory / f"{stem}.key"
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
        return cert, key


# Two loopback addresses standing for two collector replicas behind a headless Service
# (tests/agent/test_fanout.py, tests/e2e/test_two_collectors.py).
REPLICA_ADDRESSES = ("127.0.0.2", "127.0.0.3")


def port_free_on_all(addresses: Sequence[str] = REPLICA_ADDRESSES) -> int:
    """A port free right now on every one of `addresses` (replicas listen on one port)."""
    import socket

    for _ in range(50):
        with contextlib.ExitStack() as sockets:
            first = sockets.enter_context(socket.socket())
            first.bind((addresses[0], 0))
            port = int(first.getsockname()[1])
            try:
                for address in addresses[1:]:
                    sockets.enter_context(socket.socket()).bind((address, port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no port free on all of {', '.join(addresses)}")


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now on `host` (for programs that need a port in their config)."""
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
