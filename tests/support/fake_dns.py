"""A DNS server that misbehaves on purpose: `silent` reads queries and never answers,
`servfail` answers every query with SERVFAIL. Run as
`python -m tests.support.fake_dns MODE ADDRESS [PORT]` (usually inside a namespace).
"""

from __future__ import annotations

import socket
import struct
import sys


def servfail_reply(query: bytes) -> bytes:
    """The query's ID and question, QR=1, RD copied, RA=1, RCODE=2; no other sections."""
    offset = 12
    while offset < len(query) and query[offset] != 0:
        offset += query[offset] + 1
    question = query[12 : offset + 5]
    (ident, flags) = struct.unpack("!HH", query[:4])
    reply_flags = 0x8000 | (flags & 0x7900) | 0x0080 | 2
    return struct.pack("!HHHHHH", ident, reply_flags, 1, 0, 0, 0) + question


def main() -> None:
    mode, address = sys.argv[1], sys.argv[2]
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 53
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, port))
        print("ready", flush=True)
        while True:
            query, peer = sock.recvfrom(4096)
            if mode == "servfail" and len(query) >= 12:
                sock.sendto(servfail_reply(query), peer)


if __name__ == "__main__":
    main()
