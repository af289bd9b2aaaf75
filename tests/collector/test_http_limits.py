"""The HTTP side under abuse: unfinished headers are cut off, concurrent scrapes share a render."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

import collector.service as service_module
from collector.config import CollectorConfig, ListenConfig
from collector.published import Published
from collector.service import CollectorService
from collector.web import WRITE_CHUNK_BYTES
from tests.support.builders import report as full_report
from tests.support.ingest_calls import report, send


@pytest.fixture
async def quick_timeouts(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[CollectorService]:
    monkeypatch.setattr(service_module, "HEADER_TIMEOUT_SECONDS", 0.5)
    config = CollectorConfig(listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"))
    service = CollectorService(config)
    await service.start()
    yield service
    await service.stop()


def _read_until_closed(port: int, first: bytes) -> bytes:
    """Sends `first` and never finishes the request; returns what came back before EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(first)
        received = b""
        while chunk := sock.recv(4096):  # a socket timeout (30 s) would fail the test
            received += chunk
        return received


async def test_a_connection_that_never_finishes_its_headers_is_closed(
    quick_timeouts: CollectorService,
) -> None:
    port = quick_timeouts.http_port
    received = await asyncio.to_thread(_read_until_closed, port, b"GET /metrics HTTP/1.1\r\nHo")
    assert received == b""  # closed by the server, no answer to half a request
    # A silent connection (not even a request line) is closed too.
    assert await asyncio.to_thread(_read_until_closed, port, b"") == b""
    # Meanwhile and afterwards, ordinary requests are served.
    url = f"http://127.0.0.1:{port}/healthz"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200


async def test_concurrent_scrapes_share_one_render(collector: CollectorService) -> None:
    await send(collector, report(name="node-a"))
    calls = 0
    started = threading.Event()
    gate = threading.Event()
    # The seam /metrics renders through (the exposition as a gzip body).
    original = collector.web.render_gzip

    def slow_render(view: Published) -> tuple[bytes, int]:
        nonlocal calls
        calls += 1
        started.set()
        gate.wait(10)  # hold the first render until every scraper is waiting
        return original(view)

    collector.web.render_gzip = slow_render
    shared = collector.web._metrics
    original_get = shared.get
    waiting = 0

    async def counted_get() -> tuple[bytes, int]:
        nonlocal waiting
        waiting += 1
        return await original_get()

    shared.get = counted_get  # type: ignore[method-assign]
    url = f"http://127.0.0.1:{collector.http_port}/metrics"
    async with aiohttp.ClientSession() as session:

        async def scrape() -> str:
            async with session.get(url) as response:
                assert response.status == 200
                return await response.text()

        tasks = [asyncio.create_task(scrape()) for _ in range(40)]
        await asyncio.to_thread(started.wait, 10)
        for _ in range(3000):  # until every request is inside the handler, waiting
            if waiting >= len(tasks):
                break
            await asyncio.sleep(0.01)
        assert waiting == len(tasks)
        gate.set()
        bodies = await asyncio.gather(*tasks)
    assert calls == 1
    assert len(set(bodies)) == 1 and 'preflight_agent_up{node="node-a"} 1.0' in bodies[0]
    # After a change the next scrape renders afresh (unchanged inputs reuse the body).
    await send(collector, report(name="node-b"))
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert 'preflight_agent_up{node="node-b"} 1.0' in await response.text()
    assert calls == 2


async def test_gzip_scrapes_get_the_shared_compressed_body(collector: CollectorService) -> None:
    await send(collector, report(name="node-a"))
    url = f"http://127.0.0.1:{collector.http_port}/metrics"
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        for _ in range(5):  # until both come from one body (a judging makes a new one)
            async with session.get(url, headers={"Accept-Encoding": "gzip"}) as response:
                assert response.headers.get("Content-Encoding") == "gzip"
                compressed = await response.read()
            async with session.get(url, headers={"Accept-Encoding": "identity"}) as response:
                assert "Content-Encoding" not in response.headers
                plain = await response.read()
            if gzip.decompress(compressed) == plain:
                break
    assert b"preflight_agent_up" in plain
    assert gzip.decompress(compressed) == plain
    assert len(compressed) * 2 < len(plain)


async def test_a_plain_scrape_is_the_inflated_shared_body(collector: CollectorService) -> None:
    # More text than one write piece: the plain answer is inflated piece by piece from
    # the one gzip body kept, and is exactly its content, with a matching length.
    for i in range(400):
        collector.state.accept(full_report(f"node-{i:03d}", pci=8, driver=8), time.time())
    url = f"http://127.0.0.1:{collector.http_port}/metrics"
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        # A judging between the two requests makes a new body (its time is in the text):
        # the pair is asked again until both were answered from one body.
        for _ in range(5):
            async with session.get(url, headers={"Accept-Encoding": "identity"}) as response:
                length = int(response.headers["Content-Length"])
                plain = await response.read()
            async with session.get(url, headers={"Accept-Encoding": "gzip"}) as response:
                compressed = await response.read()
            if gzip.decompress(compressed) == plain:
                break
    assert len(plain) == length > 2 * WRITE_CHUNK_BYTES
    assert gzip.decompress(compressed) == plain
    assert b'preflight_agent_up{node="node-399"} 1.0' in plain


async def test_scrapes_tell_when_the_next_is_due(collector: CollectorService) -> None:
    # What formatting ahead is timed by (CollectorService.prepare_due): the shortest of
    # the last gaps between /metrics requests, counted from the last one.
    web = collector.web
    assert web.next_scrape_expected() is None
    url = f"http://127.0.0.1:{collector.http_port}/metrics"
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.get(url) as response:
                assert response.status == 200
            await asyncio.sleep(0.2)
    assert len(web.scrape_gaps) == 2 and min(web.scrape_gaps) >= 0.2
    assert web.last_scrape is not None
    assert web.next_scrape_expected() == web.last_scrape + min(web.scrape_gaps)
