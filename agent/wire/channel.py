"""A channel: one gRPC server address, its TLS, one reused HTTP/2 connection, unary calls.

Like a grpcio channel it connects on first use, reuses the connection for every call and
dials again after the connection died (the server restarted, sent GOAWAY, or a call
timed out without a byte from the server since it began -- a half-open connection).
Plaintext is HTTP/2 with prior knowledge; TLS offers ALPN "h2" and refuses a server
that does not pick it. The name the certificate must carry (and SNI) is `server_name`,
else the host of the target. It never reads proxy settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Iterable

from agent.wire.connection import Connection
from agent.wire.framing import DEFAULT_MAX_MESSAGE_BYTES, encode_message, request_headers
from agent.wire.status import RpcError, StatusCode

# The first reconnect attempts while waiting for a server, as grpcio's
# initial_reconnect_backoff; doubled up to the caller's wait.
RECONNECT_INITIAL_SECONDS = 0.5


def parse_target(target: str) -> tuple[str, str, int]:
    """("tcp", host, port) or ("unix", path, 0) of a gRPC target as grpcio spells them.

    `host:port`, `[v6]:port`, `ipv4:a.b.c.d:port`, `ipv6:[::1]:port`, `dns:///host:port`
    and `unix:/path`; anything else is a ValueError.
    """
    if target.startswith("unix:"):
        path = target.removeprefix("unix:").removeprefix("//")
        if not path:
            raise ValueError(f"no socket path in {target!r}")
        return "unix", path, 0
    rest = target
    for scheme in ("ipv4:", "ipv6:", "dns:///", "dns:"):
        if rest.startswith(scheme):
            rest = rest.removeprefix(scheme)
            break
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]") if host.startswith("[") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port in gRPC target {target!r}")
    return "tcp", host, int(port)


def default_authority(target: str) -> str:
    kind, host, port = parse_target(target)
    if kind == "unix":
        return "localhost"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Channel:
    """Unary calls to one address; safe to share between tasks of one event loop."""

    def __init__(
        self,
        target: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_name: str | None = None,
        authority: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.target = target
        self._kind, self._host, self._port = parse_target(target)
        self.ssl_context = ssl_context
        self.server_name = server_name
        self.authority = authority or default_authority(target)
        self.max_message_bytes = max_message_bytes
        self._connection: Connection | None = None
        self._connecting = asyncio.Lock()
        self.connects = 0  # connections established (reuse and reconnects are visible)

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.usable

    async def _connect(self) -> Connection:
        async with self._connecting:
            if self._connection is not None and self._connection.usable:
                return self._connection
            if self._connection is not None:
                self._connection.close()
                self._connection = None
            loop = asyncio.get_running_loop()
            peer = self.target

            def protocol() -> Connection:
                return Connection(peer, self.max_message_bytes)

            try:
                if self._kind == "unix":
                    transport, conn = await loop.create_unix_connection(
                        protocol, self._host, ssl=self.ssl_context,
                        server_hostname=self._verify_name() if self.ssl_context else None,
                    )  # fmt: skip
                else:
                    transport, conn = await loop.create_connection(
                        protocol, self._host, self._port, ssl=self.ssl_context,
                        server_hostname=self._verify_name() if self.ssl_context else None,
                    )  # fmt: skip
            except ssl.SSLError as error:
                # No traceback kept: through asyncio's frames it would hold the SSL
                # objects in a cycle until a full GC (agent/probes/egress/tls.py).
                error.__traceback__ = error.__context__ = None
                raise RpcError(
                    StatusCode.UNAVAILABLE, f"TLS handshake with {peer} failed: {error}"
                ) from None
            except OSError as error:
                error.__traceback__ = error.__context__ = None
                raise RpcError(
                    StatusCode.UNAVAILABLE, f"failed to connect to {peer}: {error}"
                ) from None
            if self.ssl_context is not None:
                tls = transport.get_extra_info("ssl_object")
                alpn = tls.selected_alpn_protocol() if tls is not None else None
                if alpn != "h2":
                    transport.close()
                    raise RpcError(
                        StatusCode.UNAVAILABLE, f"{peer} did not negotiate HTTP/2 (ALPN {alpn})"
                    )
            self._connection = conn
            self.connects += 1
            return conn

    def _verify_name(self) -> str:
        return self.server_name or (self._host if self._kind == "tcp" else "localhost")

    async def unary(
        self,
        method: str,
        request: bytes,
        *,
        timeout: float | None,
        metadata: Iterable[tuple[str, str]] = (),
    ) -> bytes:
        """The response message of `method` (`/package.Service/Method`); RpcError otherwise."""
        headers = request_headers(
            path=method,
            authority=self.authority,
            scheme="https" if self.ssl_context is not None else "http",
            timeout=timeout,
            metadata=metadata,
        )
        body = encode_message(request)
        started = time.monotonic()
        connection: Connection | None = None
        try:
            async with asyncio.timeout(timeout):
                connection = await self._connect()
                return await connection.call(headers, body)
        except TimeoutError:
            if connection is not None and connection.last_received < started:
                # Not a byte since the call began: a dead peer that sent no RST.
                connection.close()
            raise RpcError(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None

    async def wait_ready(self, seconds: float) -> bool:
        """Waits up to `seconds` for a connection, dialling with doubling pauses.

        True as soon as one is up (at once when it already is); False when the time is
        over. This is how a caller backing off learns early that the server is back.
        """
        deadline = time.monotonic() + seconds
        pause = RECONNECT_INITIAL_SECONDS
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self.connected
            with contextlib.suppress(RpcError, TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._connect()
                    return True
            await asyncio.sleep(min(pause, max(deadline - time.monotonic(), 0)))
            pause *= 2

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
