"""HTTP side of the collector (aiohttp): /metrics, /healthz, /readyz, /api/v1/*, the status page."""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from aiohttp import web
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST

from collector.compression import gzip_parts
from collector.concerns import CONCERNS, NodeJson
from collector.concerns.cluster import verdict_json
from collector.exposition import render
from collector.plan import PlanIndex
from collector.published import Published
from collector.rules.model import Verdict
from collector.state import NodeEntry
from collector.statuspage import render_status_page

# Returns the current exposition input (state snapshot + verdicts), computed on demand.
ViewProvider = Callable[[], Published]
# A connection that has not finished its request headers by then is closed (aiohttp's
# keep-alive timer also runs before the first request); so is an idle kept-alive one.
HEADER_TIMEOUT_SECONDS = 10.0
# After the answer, how long a request body still being sent is read before closing.
BODY_LINGER_SECONDS = 5.0
# Large answers are written in pieces, each awaited: asyncio copies whatever a socket
# cannot take at once into that connection's buffer, so 200 slow scrapers of one 10 MB
# body used to hold 200 copies of it; now each holds at most about one piece.
WRITE_CHUNK_BYTES = 256 * 1024
# Gaps kept between successive /metrics requests: the shortest is the interval after
# which the next scrape is expected (two Prometheus servers interleaving make short and
# long gaps; the shortest keeps both served warm).
SCRAPE_GAPS_KEPT = 4
# Strict JSON: NaN and Infinity are not JSON (validation keeps them out; this makes sure).
_dumps = json.JSONEncoder(allow_nan=False, ensure_ascii=False).encode

T = TypeVar("T")
# Each concern's fields of the node JSON, in registry order.
_SUMMARY = tuple(c.summary for c in CONCERNS if c.summary is not None)
_DETAIL = tuple(c.detail for c in CONCERNS if c.detail is not None)


class SharedRender(Generic[T]):
    """Concurrent requests share one computation instead of each rendering in parallel.

    200 scrapers at once used to mean 200 renders in flight (memory and CPU); now the
    first starts it, the rest await the same result. Nothing is kept afterwards: the
    next request after completion renders afresh.
    """

    def __init__(self, produce: Callable[[], Awaitable[T]]) -> None:
        self._produce = produce
        self._inflight: asyncio.Future[T] | None = None

    async def get(self) -> T:
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._run())
        # shield: a client that hangs up must not cancel the render others wait for.
        return await asyncio.shield(self._inflight)

    async def _run(self) -> T:
        try:
            return await self._produce()
        finally:
            self._inflight = None


def node_summary(node: NodeEntry, now: float, plans: PlanIndex | None = None) -> dict[str, Any]:
    """A node as /api/v1/nodes lists it: every concern's summary fields."""
    context = NodeJson(now, plans or PlanIndex())
    out: dict[str, Any] = {}
    for fields in _SUMMARY:
        out.update(fields(node, context))
    return out


def _metrics_key(data: Published) -> object:
    """Everything /metrics is rendered from; equal keys render equal bytes."""
    state = data.state
    return (
        state.version,
        state.reports_received,
        state.rejected,
        tuple(n.up for n in state.nodes),
        data.verdicts,
        data.ready,
        data.kube.fetched_at,
        data.kube.error,
        data.unusable,
        data.judged_at,
        data.judging_errors,
        data.faults.counts(),
        data.mirrors,
    )


def unusable_json(node: NodeEntry, reason: str) -> dict[str, Any]:
    """What the API still says of a node whose data could not be used."""
    return {
        "node": node.name,
        "up": node.up,
        "last_report": node.received_at,
        "unusable": reason,
    }


def node_fragment(data: Published, node: NodeEntry, detail: bool = False) -> str:
    """One node's JSON text, isolated: if its data raises, it says so and the rest is served."""
    marked = dict(data.unusable).get(node.name)
    if marked is not None:
        return _dumps(unusable_json(node, marked))
    now = data.state.taken_at

    def build() -> dict[str, Any]:
        if detail:
            return node_detail(node, now, data.plans, data.mirror_of)
        return node_summary(node, now, data.plans)

    return data.faults.guard(
        "json",
        node.name,
        lambda: _dumps(build()),
        lambda reason: _dumps(unusable_json(node, reason)),
    )


def node_detail(
    node: NodeEntry,
    now: float,
    plans: PlanIndex | None = None,
    mirror_of: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A node as /api/v1/nodes/{node} shows it: the summary, every concern's detail fields
    and the whole report."""
    detail = node_summary(node, now, plans)
    context = NodeJson(now, plans or PlanIndex(), mirror_of or {})
    for fields in _DETAIL:
        detail.update(fields(node, context))
    detail["report"] = json_format.MessageToDict(
        node.report, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return detail


class WebApp:
    def __init__(
        self,
        provide: ViewProvider,
        is_ready: Callable[[], bool],
        render: Callable[[Published], bytes] = render,
        render_gzip: Callable[[Published], tuple[bytes, int]] | None = None,
        provide_verdicts: Callable[[], Published] | None = None,
    ) -> None:
        self.provide = provide
        # A view whose `state.nodes` may be empty: enough for /api/v1/verdicts.
        self.provide_verdicts = provide_verdicts or provide
        self.render = render
        # The exposition as (gzip body, plain size): Exposition.render_gzip, which never
        # holds the text whole; else `render`'s text compressed.
        self.render_gzip = render_gzip or self._gzip_rendered
        self.is_ready = is_ready
        self._metrics = SharedRender(self._render_metrics)
        self._last_metrics: tuple[object, tuple[bytes, int]] | None = None
        # time.monotonic() of the last /metrics request (None: never scraped).
        self.last_scrape: float | None = None
        self.scrape_gaps: deque[float] = deque(maxlen=SCRAPE_GAPS_KEPT)
        self._page = SharedRender(self._render_page)
        # The last verdict tuple served and its JSON list (see verdicts); encodes counted.
        self._verdicts_json: tuple[tuple[Verdict, ...], str] | None = None
        self.verdict_encodes = 0
        self.app = web.Application()
        self.app.add_routes(
            [
                web.get("/metrics", self.metrics),
                web.get("/healthz", self.healthz),
                web.get("/readyz", self.readyz),
                web.get("/api/v1/verdicts", self.verdicts),
                web.get("/api/v1/nodes", self.nodes),
                web.get("/api/v1/nodes/{node}", self.node),
                web.get("/", self.index),
            ]
        )

    async def _render_metrics(self) -> tuple[bytes, int]:
        """(gzip body, plain size): compressed once per render and shared by every scrape.

        Only the compressed body is kept (~1/8 of the text: 15 MB, not 120 MB, at
        10,000 8-GPU nodes); a scrape without gzip gets it inflated piece by piece.
        """
        data = self.provide()
        key = _metrics_key(data)
        if self._last_metrics is not None and self._last_metrics[0] == key:
            # Nothing exposed changed: the same bytes again. Under a scrape storm this
            # keeps one body per change (at most one a second) alive, not one per scrape.
            return self._last_metrics[1]
        body = await asyncio.to_thread(self.render_gzip, data)
        self._last_metrics = (key, body)
        return body

    def _gzip_rendered(self, data: Published) -> tuple[bytes, int]:
        text = self.render(data)
        # Level 1: ~30x smaller for exposition text at a fraction of level 9's CPU, in
        # slices on several cores (zlib releases the GIL while it compresses).
        return gzip_parts((text,), level=1), len(text)

    async def _render_page(self) -> str:
        # ~44 ms per 1000 nodes: off the event loop, so gRPC ingest never waits on it.
        return await asyncio.to_thread(render_status_page, self.provide())

    def next_scrape_expected(self) -> float | None:
        """time.monotonic() at which the next /metrics request is due if scrapes keep
        their interval; None before two of them."""
        if self.last_scrape is None or not self.scrape_gaps:
            return None
        return self.last_scrape + min(self.scrape_gaps)

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        if self.last_scrape is not None:
            self.scrape_gaps.append(now - self.last_scrape)
        self.last_scrape = now
        gzipped, size = await self._metrics.get()
        # Prometheus asks for gzip: the shared compressed body means 200 scrapers write
        # ~1/20 of the bytes, and the event loop (which answers /healthz) stays free.
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return await _stream(request, gzipped, CONTENT_TYPE_LATEST, encoding="gzip")
        return await _stream_inflated(request, gzipped, size, CONTENT_TYPE_LATEST)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        if self.is_ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def verdicts(self, request: web.Request) -> web.Response:
        data = self.provide_verdicts()
        head = json.dumps(
            {
                "generated_at": data.state.taken_at,
                "profile": data.profile_name,
                "kubernetes": {
                    "available": data.kube.available,
                    "server_version": data.kube.server_version,
                    "error": data.kube.error,
                },
                "ready": dict(data.ready),
            }
        )
        mirrors = json.dumps(
            [{"target": m.target, "origin": m.origin, "mirror": m.address} for m in data.mirrors]
        )
        # As json.dumps writes the whole object, with the verdict list encoded once per
        # judging: it names up to every node (10,000 names at 10,000 GPU nodes), and a
        # dashboard polling it took 7 % of the GIL encoding the same list again.
        verdicts = self._verdict_list(data.verdicts)
        body = f'{head[:-1]}, "verdicts": {verdicts}, "mirrors": {mirrors}}}'
        return web.json_response(text=body)

    def _verdict_list(self, verdicts: tuple[Verdict, ...]) -> str:
        cached = self._verdicts_json
        # By identity: the service replaces the tuple on every judging, never mutates it.
        if cached is None or cached[0] is not verdicts:
            cached = (verdicts, json.dumps([verdict_json(v) for v in verdicts]))
            self._verdicts_json = cached
            self.verdict_encodes += 1
        return cached[1]

    async def nodes(self, request: web.Request) -> web.Response:
        data = self.provide()
        nodes = ",".join(node_fragment(data, n) for n in data.state.nodes)
        body = f'{{"generated_at": {_dumps(data.state.taken_at)}, "nodes": [{nodes}]}}'
        return web.json_response(text=body)

    async def node(self, request: web.Request) -> web.Response:
        data = self.provide()
        name = request.match_info["node"]
        entry = data.state.node(name)
        if entry is None:
            return web.json_response({"error": "unknown node", "node": name}, status=404)
        return web.json_response(text=node_fragment(data, entry, detail=True))

    async def index(self, request: web.Request) -> web.StreamResponse:
        page = await self._page.get()
        return await _stream(request, page.encode(), "text/html; charset=utf-8", compress=True)


async def _stream(
    request: web.Request,
    body: bytes | Sequence[bytes],
    content_type: str,
    compress: bool = False,
    encoding: str | None = None,
) -> web.StreamResponse:
    """Writes `body` (bytes, or bytes in parts) piece by piece, waiting for each to drain
    (see WRITE_CHUNK_BYTES).

    `encoding` names how `body` is already encoded (sent as Content-Encoding, as is)."""
    parts = (body,) if isinstance(body, bytes) else body
    headers = {"Content-Type": content_type, "Vary": "Accept-Encoding"}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    response = web.StreamResponse(headers=headers)
    if compress:
        response.enable_compression()
    else:
        response.content_length = sum(len(part) for part in parts)
    await response.prepare(request)
    for part in parts:
        view = memoryview(part)
        for start in range(0, len(part), WRITE_CHUNK_BYTES):
            await response.write(view[start : start + WRITE_CHUNK_BYTES])
    await response.write_eof()
    return response


async def _stream_inflated(
    request: web.Request, gzipped: bytes, size: int, content_type: str
) -> web.StreamResponse:
    """Writes the plain text of a gzip body, inflated one WRITE_CHUNK_BYTES piece at a
    time: a plain scrape holds about one piece of the text, never all of it."""
    response = web.StreamResponse(headers={"Content-Type": content_type, "Vary": "Accept-Encoding"})
    response.content_length = size
    await response.prepare(request)
    inflate = zlib.decompressobj(31)
    piece = inflate.decompress(gzipped, WRITE_CHUNK_BYTES)
    while piece:
        await response.write(piece)
        piece = inflate.decompress(inflate.unconsumed_tail, WRITE_CHUNK_BYTES)
    rest = inflate.flush()
    if rest:
        await response.write(rest)
    await response.write_eof()
    return response
