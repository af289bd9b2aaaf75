"""Wires the collector together: state, profile, verdicts, the gRPC and HTTP servers."""

from __future__ import annotations

import logging
import time

import grpc.aio
from aiohttp import web

from collector.config import CollectorConfig
from collector.ingest import ReportServicer, start_grpc_server
from collector.profile import load_profile
from collector.rules import cluster_ready, evaluate_all
from collector.rules.model import ClusterView
from collector.state import ClusterState
from collector.view import CollectorView
from collector.web import WebApp

log = logging.getLogger(__name__)


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


class CollectorService:
    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        self.profile = load_profile(config.profile)
        self.state = ClusterState(
            config.limits,
            config.heartbeat_interval,
            config.stale_after_heartbeats,
            config.forget_after,
        )
        self.servicer = ReportServicer(self.state, config.heartbeat_interval)
        self.web = WebApp(self.exposition_input, lambda: self._grpc is not None)
        self._grpc: grpc.aio.Server | None = None
        self._http: web.AppRunner | None = None
        self.grpc_port = 0
        self.http_port = 0

    def exposition_input(self) -> CollectorView:
        now = time.time()
        snapshot = self.state.snapshot(now)
        verdicts = evaluate_all(ClusterView(state=snapshot, profile=self.profile, now=now))
        return CollectorView(
            state=snapshot,
            verdicts=tuple(verdicts),
            ready=tuple(cluster_ready(verdicts).items()),
        )

    async def start(self) -> None:
        self._http = web.AppRunner(self.web.app, access_log=None)
        await self._http.setup()
        host, port = split_address(self.config.listen.http)
        site = web.TCPSite(self._http, host, port)
        await site.start()
        self.http_port = self._http.addresses[0][1]
        self._grpc, self.grpc_port = await start_grpc_server(self.servicer, self.config.listen.grpc)
        log.info("collector: gRPC on :%d, HTTP on :%d", self.grpc_port, self.http_port)

    async def stop(self) -> None:
        if self._grpc is not None:
            await self._grpc.stop(grace=1.0)
            self._grpc = None
        if self._http is not None:
            await self._http.cleanup()
            self._http = None
