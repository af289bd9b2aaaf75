"""HTTP side of the collector (aiohttp): /metrics, /healthz, /readyz, /api/v1/*, the status page."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST

from collector.exposition import render
from collector.plan import PlanIndex
from collector.rules.model import Verdict
from collector.state import NodeEntry
from collector.statuspage import render_status_page
from collector.view import CollectorView
from preflight.enums import PHASES, REASONS
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


def plan_json(report: pb.NodeReport, plans: PlanIndex, node: str) -> dict[str, Any]:
    """The plan the node probes, whether it is the current one, and its local changes."""
    source = pb.PlanSource.Name(report.plan_source).removeprefix("PLAN_SOURCE_").lower()
    return {
        "version": report.plan_version,
        "expected_version": plans.version_for(node),
        "outdated": plans.outdated(node, report.plan_version),
        "source": source,
        "local_targets": list(report.local_targets),
        "local_volumes": list(report.local_volumes),
    }


def node_summary(node: NodeEntry, now: float, plans: PlanIndex | None = None) -> dict[str, Any]:
    report = node.report
    return {
        "node": node.name,
        "up": node.up,
        "first_seen": node.first_seen,
        "last_report": node.received_at,
        "last_report_age_seconds": round(now - node.received_at, 3),
        "clock_skew_seconds": round(node.clock_skew_seconds, 3),
        "agent_version": report.agent_version,
        "egress": {
            e.target: "up" if e.outcome == pb.OUTCOME_UP else REASONS.name(e.reason)
            for e in report.egress
        },
        "plan": plan_json(report, plans or PlanIndex(), node.name),
    }


def target_json(e: pb.EgressResult, last_success: float | None) -> dict[str, Any]:
    """One egress result with lower-case enum names, as operators read them."""
    up = e.outcome == pb.OUTCOME_UP
    return {
        "target": e.target,
        "up": up,
        "reason": "" if up else REASONS.name(e.reason),
        "failed_phase": "" if up else PHASES.name(e.failed_phase),
        "message": e.message,
        "phases": {PHASES.name(p.phase): p.duration_seconds for p in e.phases},
        "total_seconds": e.total_seconds,
        "time_to_first_byte_seconds": e.time_to_first_byte_seconds,
        "http_status": e.http_status,
        "proxy_used": e.proxy_used,
        "proxy": e.proxy,
        "last_success": last_success,
    }


def node_detail(node: NodeEntry, now: float, plans: PlanIndex | None = None) -> dict[str, Any]:
    detail = node_summary(node, now, plans)
    last_success = dict(node.last_success)
    detail["targets"] = [target_json(e, last_success.get(e.target)) for e in node.report.egress]
    detail["report"] = json_format.MessageToDict(
        node.report, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return detail


class WebApp:
    def __init__(
        self,
        provide: ViewProvider,
        is_ready: Callable[[], bool],
        render: Callable[[CollectorView], bytes] = render,
    ) -> None:
        self.provide = provide
        self.render = render
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
        body = await asyncio.to_thread(self.render, data)
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
                "profile": data.profile_name,
                "kubernetes": {
                    "available": data.kube.available,
                    "server_version": data.kube.server_version,
                    "error": data.kube.error,
                },
                "ready": dict(data.ready),
                "verdicts": [verdict_json(v) for v in data.verdicts],
            }
        )

    async def nodes(self, request: web.Request) -> web.Response:
        data = self.provide()
        now = data.state.taken_at
        return web.json_response(
            {
                "generated_at": now,
                "nodes": [node_summary(n, now, data.plans) for n in data.state.nodes],
            }
        )

    async def node(self, request: web.Request) -> web.Response:
        data = self.provide()
        name = request.match_info["node"]
        entry = data.state.node(name)
        if entry is None:
            return web.json_response({"error": "unknown node", "node": name}, status=404)
        return web.json_response(node_detail(entry, data.state.taken_at, data.plans))

    async def index(self, request: web.Request) -> web.Response:
        # ~44 ms per 1000 nodes: off the event loop, so gRPC ingest never waits on it.
        page = await asyncio.to_thread(render_status_page, self.provide())
        response = web.Response(text=page, content_type="text/html")
        response.enable_compression()
        return response
