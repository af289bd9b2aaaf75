"""The "internet" of the egress scenario: one HTTPS origin per default target, each on its own IP.

Run as `python -m tests.support.egress_origins SPEC.json` inside the internet
namespace. SPEC is `{"cert": PEM chain, "key": PEM key, "origins": [{"host", "ip", "port",
"path", "status", "headers"}]}`. Every origin answers its profile path with the status a
real service gives there (a registry's `/v2/` says 401 with `WWW-Authenticate`, the
Prometheus push endpoint 405 to a GET) and every other path with 404, so an agent that
asked for the wrong path would be reported down. Each origin has an address of its own so
that nftables can cut one target without touching the others. Prints `ready` once every
listener is bound, then serves until terminated.
"""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import sys
from pathlib import Path
from typing import Any


def _response(status: int, headers: list[tuple[str, str]]) -> bytes:
    body = b"preflight scenario origin\n"
    lines = [f"HTTP/1.1 {status} Scenario", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _handler(origin: dict[str, Any]) -> Any:
    expected = _response(int(origin["status"]), [tuple(h) for h in origin.get("headers", [])])
    not_found = _response(404, [])

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            request_line = head.split(b"\r\n", 1)[0].decode(errors="replace").split()
            path = request_line[1] if len(request_line) == 3 else ""
            writer.write(expected if path == origin["path"] else not_found)
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a probe that gave up mid-request is not the origin's problem
        finally:
            writer.close()

    return handle


async def serve(spec: dict[str, Any]) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(spec["cert"], spec["key"])
    servers = [
        await asyncio.start_server(_handler(o), o["ip"], int(o["port"]), ssl=context)
        for o in spec["origins"]
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for server in servers:
        server.close()


def main() -> None:
    asyncio.run(serve(json.loads(Path(sys.argv[1]).read_text())))


if __name__ == "__main__":
    main()
