"""HTTP side of the collector (aiohttp): /metrics, /healthz, /readyz, /api/v1/*, the status page."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST

from collector.exposition import render
from collector.rules.model import Verdict
from collector.state import NodeEntry
from collector.statuspage import render_status_page
from collector.view import CollectorView
from preflight.enums import REASONS
from preflight.v1 import report_pb2 as pb

# Returns the current exposition input (state snapshot + verdicts), computed on demand.
ViewProvider = Callable[[], CollectorView]


def verdict_json(v: Verdict) -> dict[str, Any]:
    return {
        "requirement": v.requirement,
        "status": v.status,
        "reason": v.reason,
        "nodes": list(v.nodes),
        "targets": list(v.targets),
        "since": v.since,
    }


def node_summary(node: NodeEntry, now: float) -> dict[str, Any]:
    report = node.report
    return {
        "node": node.name,
        "up": node.up,
        "last_report": node.received_at,
        "last_report_age_seconds": round(now - node.received_at, 3),
        "clock_skew_seconds": round(node.clock_skew_seconds, 3),
        "agent_version": report.agent_version,
        "egress": {
            e.target: "up" if e.outcome == pb.OUTCOME_UP else REASONS.name(e.reason)
            for e in report.egress
        },
    }


def node_detail(node: NodeEntry, now: float) -> dict[str, Any]:
    detail = node_summary(node, now)
    detail["report"] = json_format.MessageToDict(
        node.report, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return detail


class WebApp:
    def __init__(self, provide: ViewProvider, is_ready: Callable[[], bool]) -> None:
        self.provide = provide
        self.is_ready = is_ready
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

    async def metrics(self, request: web.Request) -> web.Response:
        data = self.provide()
        body = await asyncio.to_thread(render, data)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        if self.is_ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def verdicts(self, request: web.Request) -> web.Response:
        data = self.provide()
        return web.json_response(
            {
                "generated_at": data.state.taken_at,
                "ready": dict(data.ready),
                "verdicts": [verdict_json(v) for v in data.verdicts],
            }
        )

    async def nodes(self, request: web.Request) -> web.Response:
        data = self.provide()
        now = time.time()
        return web.json_response({"nodes": [node_summary(n, now) for n in data.state.nodes]})

    async def node(self, request: web.Request) -> web.Response:
        data = self.provide()
        entry = data.state.node(request.match_info["node"])
        if entry is None:
            return web.json_response({"error": "unknown node"}, status=404)
        return web.json_response(node_detail(entry, time.time()))

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(text=render_status_page(self.provide()), content_type="text/html")
