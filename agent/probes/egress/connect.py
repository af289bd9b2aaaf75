"""Phase `connect`: TCP to each resolved address in order until one accepts.

ECONNREFUSED → `connect_refused`; ENETUNREACH/EHOSTUNREACH → `network_unreachable`.
When several addresses fail, a refusal wins (the host was reached), else the first
error. A connect failure to the proxy itself is reported with these same reasons; the
message names the proxy.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

from agent.probes.egress.state import Failure, ProbeState, format_sockaddr


async def connect(state: ProbeState, infos: list[tuple[Any, ...]]) -> tuple[socket.socket, Any]:
    loop = asyncio.get_running_loop()
    errors: list[tuple[Any, OSError]] = []
    for family, socktype, proto, _, sockaddr in infos:
        try:
            # Inside the try: creating an AF_INET6 socket fails where IPv6 is disabled.
            sock = socket.socket(family, socktype, proto)
        except OSError as error:
            errors.append((sockaddr, error))
            continue
        state.sockets.append(sock)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, sockaddr)
        except OSError as error:
            state.sockets.remove(sock)
            sock.close()
            errors.append((sockaddr, error))
            continue
        return sock, sockaddr
    where = "proxy " if state.proxy is not None else ""
    details = "; ".join(f"{format_sockaddr(a)}: {e.strerror or e}" for a, e in errors)
    if any(e.errno == errno.ECONNREFUSED for _, e in errors):
        raise Failure("connect_refused", "connect", f"{where}connection refused ({details})")
    first = errors[0][1] if errors else None
    if first is not None and first.errno in (errno.ETIMEDOUT,):
        raise Failure("connect_timeout", "connect", f"{where}connect timed out ({details})")
    if first is not None and first.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        raise Failure("network_unreachable", "connect", f"{where}no route ({details})")
    raise Failure("network_unreachable", "connect", f"{where}cannot connect ({details})")
