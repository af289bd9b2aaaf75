"""Phase `proxy_connect`: `CONNECT host:port` through an HTTP proxy (h11).

`Proxy-Authorization: Basic` is sent when the proxy URL has credentials. A proxy's
answer is never the origin's: 407 → `proxy_auth_required` (so is 401: tinyproxy answers
wrong credentials with it, and a 401 to CONNECT can only come from the proxy);
500/502/503/504 → `proxy_connect_failed` (the proxy could not reach the origin: squid
says 503, tinyproxy 500 "Unable to connect"); any other non-2xx → `proxy_denied`; the
proxy closing the connection or answering garbage before a status → `proxy_connect_failed`.
"""

from __future__ import annotations

import asyncio

import h11

from agent.probes.egress.state import READ_SIZE, USER_AGENT, Failure, authority
from agent.probes.proxy_env import ProxyEndpoint
from agent.probes.results import FailureReason

_PROXY_ORIGIN_FAILURES = frozenset({500, 502, 503, 504})


async def proxy_connect(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    proxy: ProxyEndpoint,
    host: str,
    port: int,
) -> int:
    host_port = authority(host, port)
    headers = [("Host", host_port), ("User-Agent", USER_AGENT)]
    if proxy.authorization is not None:
        headers.append(("Proxy-Authorization", proxy.authorization))
    conn = h11.Connection(our_role=h11.CLIENT)
    writer.write(conn.send(h11.Request(method="CONNECT", target=host_port, headers=headers)) or b"")
    writer.write(conn.send(h11.EndOfMessage()) or b"")
    try:
        await writer.drain()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(READ_SIZE)
                if not data:
                    raise Failure(
                        "proxy_connect_failed",
                        "proxy_connect",
                        f"proxy {proxy.display} closed the connection without answering CONNECT",
                    )
                conn.receive_data(data)
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                break
            raise Failure(
                "proxy_connect_failed",
                "proxy_connect",
                f"proxy {proxy.display} sent {type(event).__name__} instead of a status",
            )
    except h11.RemoteProtocolError as error:
        raise Failure(
            "proxy_connect_failed",
            "proxy_connect",
            f"proxy {proxy.display} answered CONNECT with invalid HTTP: {error}",
        ) from None
    except OSError as error:
        raise Failure(
            "proxy_connect_failed",
            "proxy_connect",
            f"proxy {proxy.display} dropped the connection: {error.strerror or error}",
        ) from None
    status = event.status_code
    phrase = event.reason.decode("latin-1", "replace")
    said = f"proxy {proxy.display} answered CONNECT {host_port} with {status} {phrase}".rstrip()
    if 200 <= status < 300:
        if conn.trailing_data[0]:
            raise Failure("proxy_connect_failed", "proxy_connect", f"{said}, then sent data")
        return status
    if status in (401, 407):
        raise ProxyStatus("proxy_auth_required", status, said)
    if status in _PROXY_ORIGIN_FAILURES:
        raise ProxyStatus("proxy_connect_failed", status, f"{said}: it could not reach the origin")
    raise ProxyStatus("proxy_denied", status, said)


class ProxyStatus(Failure):
    """A proxy's non-2xx answer to CONNECT; carries the status for the result."""

    def __init__(self, reason: FailureReason, status: int, message: str) -> None:
        super().__init__(reason, "proxy_connect", message)
        self.status = status
