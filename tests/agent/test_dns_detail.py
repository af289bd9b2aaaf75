"""The stdlib DNS query that explains EAI_AGAIN (dnspython's job before; the agent's memory).

Real UDP servers on loopback answer with the rcode under test; the end-to-end path
(getaddrinfo → EAI_AGAIN → this module) runs against dnsmasq and a SERVFAIL server in
tests/agent/test_egress_netns.py.
"""

from __future__ import annotations

import asyncio
import struct
import typing
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.probes.egress.dns_detail import (
    Reply,
    ask,
    build_query,
    classify,
    nameservers,
    parse_reply,
)


class Answering(asyncio.DatagramProtocol):
    """Replies to each query with the given rcode and answer count (or not at all)."""

    def __init__(self, rcode: int | None, answers: int = 0, wrong_id: bool = False) -> None:
        self.rcode, self.answers, self.wrong_id = rcode, answers, wrong_id
        self.transport: asyncio.DatagramTransport | None = None
        self.queries: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queries.append(data)
        if self.rcode is None or self.transport is None:
            return
        (ident,) = struct.unpack("!H", data[:2])
        ident ^= 0xFFFF if self.wrong_id else 0
        flags = 0x8180 | self.rcode
        header = struct.pack("!HHHHHH", ident, flags, 1, self.answers, 0, 0)
        self.transport.sendto(header + data[12:], addr)


@pytest.fixture
async def server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[int, Answering]]:
    protocol = Answering(*request.param)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: protocol, local_addr=("127.0.0.1", 0)
    )
    yield transport.get_extra_info("sockname")[1], protocol
    transport.close()


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ((2,), Reply(rcode=2, answers=0)),
        ((3,), Reply(rcode=3, answers=0)),
        ((0, 1), Reply(rcode=0, answers=1)),
        ((None,), None),  # silent
        ((0, 1, True), None),  # a reply to somebody else's query is no reply
    ],
    indirect=["server"],
)
async def test_one_server_replies_or_not(
    server: tuple[int, Answering], expected: Reply | None
) -> None:
    port, protocol = server
    query = build_query("servfail.test", 1, 4242)
    assert await ask("127.0.0.1", query, 4242, 0.5, port=port) == expected
    assert protocol.queries == [query]


def test_the_query_is_a_recursive_question_for_the_name() -> None:
    query = build_query("quay.io.", 28, 7)
    assert struct.unpack("!HHHHHH", query[:12]) == (7, 0x0100, 1, 0, 0, 0)
    assert query[12:] == b"\x04quay\x02io\x00" + struct.pack("!HH", 28, 1)
    for bad in ("a..b", "x" * 64 + ".io"):
        with pytest.raises(ValueError):
            build_query(bad, 1, 1)


@pytest.mark.parametrize(
    "data", [b"", b"\x00" * 11, struct.pack("!HHHHHH", 9, 0x0100, 0, 0, 0, 0), b"\xff" * 512]
)
def test_hostile_or_foreign_replies_are_not_answers(data: bytes) -> None:
    # Too short, a query (QR=0), somebody else's id: never an answer.
    assert parse_reply(data, 1) is None


def test_replies_classified_as_the_resolver_did() -> None:
    servfail, nx, empty, ok = Reply(2, 0), Reply(3, 0), Reply(0, 0), Reply(0, 2)
    assert classify("h", [("a", None), ("b", None)])[0] == "dns_timeout"
    reason, message = classify("h", [("10.0.0.1", servfail), ("10.0.0.2", None)])
    assert (
        reason == "dns_error" and message == "DNS servers failed for h: 10.0.0.1 answered SERVFAIL"
    )
    assert classify("h", [("a", servfail), ("b", nx)])[0] == "dns_nxdomain"
    assert classify("h", [("a", empty)])[0] == "dns_nxdomain"  # NOERROR, no address
    assert "answers now" in classify("h", [("a", None), ("b", ok)])[1]


def test_nameservers_from_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch x\nnameserver 10.0.0.1\nnameserver fd00::1\n"
                    "nameserver 10.0.0.3\nnameserver 10.0.0.4\noptions ndots:5\n")  # fmt: skip
    assert nameservers(conf) == ["10.0.0.1", "fd00::1", "10.0.0.3"]  # glibc reads three
    conf.write_text("search only\n")
    assert nameservers(conf) == ["127.0.0.1"]
    assert nameservers(tmp_path / "missing") == ["127.0.0.1"]
