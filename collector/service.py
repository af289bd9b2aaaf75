"""Wires the collector together: state, profile, verdicts, the gRPC and HTTP servers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import grpc.aio
from aiohttp import web
from kubernetes.client import Configuration

from collector.config import CollectorConfig
from collector.ingest import ReportServicer, start_grpc_server
from collector.kube import KubeWatcher
from collector.profile import load_profile
from collector.rules import cluster_ready, evaluate_all
from collector.rules.hysteresis import HysteresisTracker
from collector.rules.model import ClusterView, Verdict
from collector.state import ClusterState
from collector.view import CollectorView
from collector.web import WebApp

log = logging.getLogger(__name__)

EVALUATION_INTERVAL_SECONDS = 1.0


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


class CollectorService:
    def __init__(
        self, config: CollectorConfig, *, kube_configuration: Configuration | None = None
    ) -> None:
        self.config = config
        self.profile = load_profile(config.profile)
        self.state = ClusterState(
            config.limits,
            config.heartbeat_interval,
            config.stale_after_heartbeats,
            config.forget_after,
        )
        self.servicer = ReportServicer(self.state, config.heartbeat_interval)
        self.hysteresis = HysteresisTracker(self.profile.hysteresis)
        # An injected client configuration (tests: kmock) overrides kubernetes.mode.
        self.kube = KubeWatcher.from_config(config.kubernetes, configuration=kube_configuration)
        self._observed: object = None
        self._verdicts: tuple[Verdict, ...] = ()
        self._observer: asyncio.Task[None] | None = None
        self.web = WebApp(self.current_view, lambda: self._grpc is not None)
        self._grpc: grpc.aio.Server | None = None
        self._http: web.AppRunner | None = None
        self.grpc_port = 0
        self.http_port = 0

    def current_view(self) -> CollectorView:
        """The view of now; re-judges only when something observable changed."""
        now = time.time()
        snapshot = self.state.snapshot(now)
        kube = self.kube.latest()
        key = (
            snapshot.version,
            tuple(n.up for n in snapshot.nodes),
            kube.fetched_at,
            kube.error,
            # Time alone matters too (late reports, marker age): once per heartbeat.
            int(now // self.config.heartbeat_interval),
        )
        if key != self._observed:
            raw = evaluate_all(
                ClusterView(state=snapshot, profile=self.profile, now=now, kube=kube)
            )
            self._verdicts = tuple(self.hysteresis.observe(raw, now))
            self._observed = key
        return CollectorView(
            state=snapshot,
            verdicts=self._verdicts,
            ready=tuple(cluster_ready(list(self._verdicts)).items()),
            kube=kube,
            profile_name=self.profile.name,
        )

    async def _observe_forever(self) -> None:
        # Observations must not depend on how often someone scrapes.
        while True:
            self.current_view()
            await asyncio.sleep(EVALUATION_INTERVAL_SECONDS)

    async def start(self) -> None:
        self._http = web.AppRunner(self.web.app, access_log=None)
        await self._http.setup()
        host, port = split_address(self.config.listen.http)
        site = web.TCPSite(self._http, host, port)
        await site.start()
        self.http_port = self._http.addresses[0][1]
        self._grpc, self.grpc_port = await start_grpc_server(self.servicer, self.config.listen.grpc)
        await self.kube.start()
        self._observer = asyncio.create_task(self._observe_forever())
        log.info("collector: gRPC on :%d, HTTP on :%d", self.grpc_port, self.http_port)

    async def stop(self) -> None:
        if self._observer is not None:
            self._observer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._observer
            self._observer = None
        await self.kube.stop()
        if self._grpc is not None:
            await self._grpc.stop(grace=1.0)
            self._grpc = None
        if self._http is not None:
            await self._http.cleanup()
            self._http = None
