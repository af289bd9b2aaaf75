"""Why the resolver said EAI_AGAIN: one DNS query to each configured server, stdlib only.

glibc answers EAI_AGAIN both when no DNS server answered and when they answered
SERVFAIL; the operator needs to know which (`dns_timeout` or `dns_error`). This module
asks the servers of /etc/resolv.conf (what getaddrinfo just used) once, over UDP, and
reads the answer's header. It replaces dnspython, which cost the agent 15.6 MiB of
resident memory the first time a node's DNS failed (docs/performance.md, "Agent
footprint"). Only the header and the answer count are read: no name in a reply is
parsed, so a hostile reply can at worst be "not an answer".
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

from agent.probes.results import FailureReason

RESOLV_CONF = Path("/etc/resolv.conf")
PORT = 53
QTYPE = {"ipv4": 1, "any": 1, "ipv6": 28}  # A, AAAA
RCODES = {1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
HEADER = struct.Struct("!HHHHHH")


def nameservers(path: Path = RESOLV_CONF) -> list[str]:
    """The `nameserver` lines of resolv.conf; glibc's default (the local host) when none."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    found = [
        parts[1]
        for parts in (line.split() for line in lines)
        if len(parts) >= 2 and parts[0] == "nameserver"
    ]
    return found[:3] or ["127.0.0.1"]  # glibc uses at most three (MAXNS)


def build_query(host: str, qtype: int, ident: int) -> bytes:
    """A recursive query for `host`; ValueError for a name DNS cannot carry."""
    labels = host.rstrip(".").encode("idna").split(b".")
    if not all(0 < len(label) < 64 for label in labels):
        raise ValueError(f"{host!r} is not a DNS name")
    qname = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    return HEADER.pack(ident, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", qtype, 1)


@dataclass(frozen=True)
class Reply:
    rcode: int
    answers: int


def parse_reply(data: bytes, ident: int) -> Reply | None:
    """The rcode and answer count of a reply to query `ident`; None when it is not one."""
    if len(data) < HEADER.size:
        return None
    got, flags, _qd, answers, _ns, _ar = HEADER.unpack_from(data)
    if got != ident or not flags & 0x8000:  # not our id, or not a response
        return None
    return Reply(rcode=flags & 0x000F, answers=answers)


class _Query(asyncio.DatagramProtocol):
    def __init__(self, ident: int) -> None:
        self.ident = ident
        self.reply: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        reply = parse_reply(data, self.ident)
        if reply is not None and not self.reply.done():
            self.reply.set_result(reply)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP unreachable: counts as no answer, as for the resolver


async def ask(
    server: str, query: bytes, ident: int, budget: float, port: int = PORT
) -> Reply | None:
    """One server's reply within `budget` seconds, or None (silent, unreachable)."""
    loop = asyncio.get_running_loop()
    try:
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _Query(ident), remote_addr=(server, port)
        )
    except OSError:
        return None
    try:
        transport.sendto(query)
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(protocol.reply), budget)
        return None
    finally:
        transport.close()


async def explain_eai_again(host: str, family: str, budget: float) -> tuple[FailureReason, str]:
    """(reason, message) for an EAI_AGAIN from getaddrinfo, after asking every server."""
    servers = nameservers()
    qtype = QTYPE.get(family, 1)
    idents = [secrets.randbits(16) for _ in servers]
    try:
        queries = [build_query(host, qtype, ident) for ident in idents]
    except (ValueError, UnicodeError):
        return "dns_error", f"{host!r} is not a valid host name"
    replies = await asyncio.gather(
        *(ask(s, q, i, budget) for s, q, i in zip(servers, queries, idents, strict=True))
    )
    return classify(host, list(zip(servers, replies, strict=True)))


def classify(host: str, replies: list[tuple[str, Reply | None]]) -> tuple[FailureReason, str]:
    """What the servers' replies (None: no answer) say, as dnspython's resolve() read them."""
    answered = [(s, r) for s, r in replies if r is not None]
    if any(r.rcode == 0 and r.answers for _s, r in answered):
        return (
            "dns_error",
            f"temporary failure resolving {host} (EAI_AGAIN); the server answers now",
        )
    if any(r.rcode == 3 or (r.rcode == 0 and not r.answers) for _s, r in answered):
        return "dns_nxdomain", f"{host} does not exist"
    if answered:
        failures = "; ".join(
            f"{s} answered {RCODES.get(r.rcode, f'rcode {r.rcode}')}" for s, r in answered
        )
        return "dns_error", f"DNS servers failed for {host}: {failures}"
    return "dns_timeout", f"no DNS server answered for {host}"
