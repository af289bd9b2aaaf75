"""Wires the collector together: state, profile, verdicts, the gRPC and HTTP servers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable

import grpc.aio
from aiohttp import web
from kubernetes.client import Configuration

from collector.config import CollectorConfig
from collector.exposition import Exposition
from collector.ingest import ReportServicer, start_grpc_server
from collector.kube import KubeWatcher
from collector.rules import cluster_ready, evaluate_all
from collector.rules.hysteresis import HysteresisTracker
from collector.rules.model import ClusterView, Verdict
from collector.state import ClusterState
from collector.view import CollectorView
from collector.web import WebApp
from preflight.profile import load_profile

log = logging.getLogger(__name__)

EVALUATION_INTERVAL_SECONDS = 1.0
SHUTDOWN_STEP_SECONDS = 5.0


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


async def _bounded(what: str, awaitable: Awaitable[object]) -> None:
    try:
        await asyncio.wait_for(awaitable, SHUTDOWN_STEP_SECONDS)
    except asyncio.CancelledError:
        pass  # the observer task, cancelled on purpose
    except TimeoutError:
        log.warning("shutdown: %s did not stop within %gs", what, SHUTDOWN_STEP_SECONDS)


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
        self.exposition = Exposition()
        self.web = WebApp(
            self.current_view, lambda: self._grpc is not None, render=self.exposition.render
        )
        self._grpc: grpc.aio.Server | None = None
        self._http: web.AppRunner | None = None
        self.grpc_port = 0
        self.http_port = 0

    def current_view(self) -> CollectorView:
        """A fresh snapshot with the latest verdicts (at most one evaluation interval old)."""
        snapshot = self.state.snapshot(time.time())
        return CollectorView(
            state=snapshot,
            verdicts=self._verdicts,
            ready=tuple(cluster_ready(list(self._verdicts)).items()),
            kube=self.kube.latest(),
            profile_name=self.profile.name,
        )

    def _judge(self, view: ClusterView) -> tuple[Verdict, ...]:
        # Pure rules over immutable data, plus hysteresis that only this path touches.
        return tuple(self.hysteresis.observe(evaluate_all(view), view.now))

    async def observe(self) -> None:
        """One observation: re-judge when something observable changed since the last."""
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
        if key == self._observed:
            return
        view = ClusterView(state=snapshot, profile=self.profile, now=now, kube=kube)
        # ~80 ms at 10,000 nodes: off the event loop, so gRPC ingest never waits on it.
        self._verdicts = await asyncio.to_thread(self._judge, view)
        self._observed = key

    async def _observe_forever(self) -> None:
        # Observations follow the state, not how often someone scrapes.
        while True:
            await asyncio.sleep(EVALUATION_INTERVAL_SECONDS)
            await self.observe()

    async def start(self) -> None:
        self._http = web.AppRunner(
            self.web.app, access_log=None, shutdown_timeout=SHUTDOWN_STEP_SECONDS / 2
        )
        await self._http.setup()
        host, port = split_address(self.config.listen.http)
        site = web.TCPSite(self._http, host, port)
        await site.start()
        self.http_port = self._http.addresses[0][1]
        self._grpc, self.grpc_port = await start_grpc_server(self.servicer, self.config.listen.grpc)
        await self.kube.start()
        await self.observe()
        self._observer = asyncio.create_task(self._observe_forever())
        log.info("collector: gRPC on :%d, HTTP on :%d", self.grpc_port, self.http_port)

    async def stop(self) -> None:
        """Stops every part, each within a bound: a SIGTERM must end the process promptly."""
        if self._observer is not None:
            self._observer.cancel()
            await _bounded("observer", self._observer)
            self._observer = None
        await _bounded("Kubernetes watcher", self.kube.stop())
        if self._grpc is not None:
            await _bounded("gRPC server", self._grpc.stop(grace=1.0))
            self._grpc = None
        if self._http is not None:
            await _bounded("HTTP server", self._http.cleanup())
            self._http = None
