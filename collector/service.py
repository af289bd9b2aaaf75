"""Wires the collector together: state, profile, verdicts, the gRPC and HTTP servers."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable
from operator import attrgetter

from aiohttp import web
from kubernetes.client import Configuration

from collector.auth import build_authenticator
from collector.config import CollectorConfig
from collector.encoder import EncoderProcess
from collector.exposition import Exposition
from collector.ingest import GrpcServer, ReportServicer, start_grpc_server
from collector.isolation import FaultLog
from collector.judging import evaluate_isolated
from collector.judging_process import JudgingProcess
from collector.kube.platform import read_platform
from collector.kube.platform_facts import PlatformFacts
from collector.kube.watcher import KubeWatcher
from collector.plan import PlanBook
from collector.published import Published
from collector.rules import PLATFORM_REQUIREMENTS, cluster_ready
from collector.rules.hysteresis import HysteresisTracker
from collector.rules.model import Evidence, Verdict
from collector.state import AgentReports, ClusterState
from collector.tls import CertificateSource
from collector.web import BODY_LINGER_SECONDS, HEADER_TIMEOUT_SECONDS, WebApp
from preflight.configfile import ConfigError
from preflight.mirrors import resolve_mirrors
from preflight.net import is_loopback
from preflight.profile import Profile, load_profile, shipped_profiles

log = logging.getLogger(__name__)

EVALUATION_INTERVAL_SECONDS = 1.0
# Verdicts older than this many evaluation intervals (at least two heartbeats, which
# is when they must be re-judged anyway) mean the engine is stuck: /readyz fails.
STALLED_AFTER_INTERVALS = 10
SHUTDOWN_STEP_SECONDS = 5.0
# Judging may take at most this share of one core on average (measured in CPU time):
# 10,000 nodes judge in ~80 ms on a quiet core, so this binds only on a starved machine.
JUDGING_CPU_SHARE = 0.2
# /metrics text is pre-encoded (Exposition.prepare) this often while someone scrapes:
# the nodes that reported since are formatted in the background, in slices, so that a
# scrape is a join of cached text rather than seconds of formatting holding the GIL.
PREPARE_INTERVAL_SECONDS = 1.0
# "Someone scrapes": a /metrics request within this long (the start counts as one).
# Unscraped after that, nothing is formatted ahead (one render per accepted report
# for no reader).
PREPARE_WHILE_SCRAPED_SECONDS = 300.0
# Once the scrape interval is known (two scrapes), formatting ahead runs only this long
# before the next scrape is due, plus twice what the longest recent pre-encoding took
# (at a high report rate nearly every node changes between two scrapes, and all of them
# must be formatted before the scrape): a node that reports several times between two
# scrapes is formatted about once for the scrape that reads it, not once per report. A
# scrape still formats whatever changed since, so it is never behind.
PREPARE_LEAD_SECONDS = 3.0
# How fast the longest recent pre-encoding is forgotten, per pre-encoding.
PREPARE_TOOK_DECAY = 0.9


_up = attrgetter("up")


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
        self,
        config: CollectorConfig,
        *,
        kube_configuration: Configuration | None = None,
        metrics_encoder: EncoderProcess | None = None,
        judging_process: JudgingProcess | None = None,
    ) -> None:
        self.config = config
        self._profile_stamp = self._profile_file_stamp()
        self.profile = load_profile(config.profile)
        self._profile_generation = 0
        self.state = ClusterState(
            config.limits,
            config.heartbeat_interval,
            config.stale_after_heartbeats,
            config.forget_after,
        )
        # Both raise ConfigError naming the key: the CLI exits 2 before anything listens.
        self.authenticator = build_authenticator(
            config.auth, config.kubernetes, kube_configuration=kube_configuration
        )
        self.certificates = CertificateSource(config.tls) if config.tls.enabled else None
        self.hysteresis = HysteresisTracker(self.profile.hysteresis)
        # An injected client configuration (tests: kmock) overrides kubernetes.mode.
        self.kube = KubeWatcher.from_config(
            config.kubernetes,
            configuration=kube_configuration,
            platform_reader=self._read_platform,
        )
        # Raises ConfigError naming `mirrors.<name>` when a mirror names no profile target.
        self.plans = PlanBook(self.profile, self.kube.latest, config.cluster_domain, config.mirrors)
        self.servicer = ReportServicer(
            self.state,
            config.heartbeat_interval,
            self.plans.for_node,
            authenticator=self.authenticator,
            known_nodes=self._known_nodes,
            auth_timeout=config.auth.review_timeout,
        )
        self._observed: object = None
        self._verdicts: tuple[Verdict, ...] = ()
        self._unusable: tuple[tuple[str, str], ...] = ()
        self._judged_at = 0.0
        self.judging_errors = 0
        # CPU time of the last judging (thread time: contention does not count) and the
        # earliest time the observer loop judges again (see observe).
        self.judging_cpu_seconds = 0.0
        self._judge_not_before = 0.0
        self.faults = FaultLog()
        self.verdicts_stale_after = max(
            STALLED_AFTER_INTERVALS * EVALUATION_INTERVAL_SECONDS, 2 * config.heartbeat_interval
        )
        self._known: tuple[float, frozenset[str] | None] = (-1.0, None)
        self._observer: asyncio.Task[None] | None = None
        # The CLI formats /metrics text in a child process (collector/encoder.py); tests
        # that construct a service format in process unless they pass one.
        self.metrics_encoder = metrics_encoder
        # Likewise the judging (collector/judging_process.py).
        self.judging_process = judging_process
        self.exposition = Exposition(metrics_encoder)
        self.web = WebApp(
            self.current_view,
            self.is_ready,
            provide_verdicts=self.verdicts_view,
            render=self.exposition.render,
            render_gzip=self.exposition.render_gzip,
        )
        self._preparer: asyncio.Task[None] | None = None
        self._created = time.monotonic()
        # The longest recent pre-encoding, in seconds (decaying; see PREPARE_LEAD_SECONDS).
        self.prepare_took = 0.0
        self._grpc: GrpcServer | None = None
        self._http: web.AppRunner | None = None
        self.grpc_port = 0
        self.http_port = 0

    def _known_nodes(self) -> frozenset[str] | None:
        """Kubernetes node names when the API is readable (ingest refuses others), else None."""
        kube = self.kube.latest()
        if not kube.available:
            return None
        # Read once, replaced whole: gRPC handler threads call this concurrently.
        known = self._known
        if known[0] != kube.fetched_at:
            known = (kube.fetched_at, frozenset(n.name for n in kube.nodes))
            self._known = known
        return known[1]

    def is_ready(self) -> bool:
        """Serving gRPC and judging; verdicts older than `verdicts_stale_after`: frozen engine."""
        if self._grpc is None:
            return False
        return time.time() - self._judged_at <= self.verdicts_stale_after

    def current_view(self) -> Published:
        """A fresh snapshot with the latest verdicts (at most one evaluation interval old)."""
        return self._view(self.state.snapshot(time.time()))

    def verdicts_view(self) -> Published:
        """current_view without the nodes (`state.nodes` is empty): what the verdicts API
        reads, at no cost per node."""
        return self._view(self.state.summary(time.time()))

    def _view(self, snapshot: AgentReports) -> Published:
        phases = self.profile.phase_requirements()
        return Published(
            state=snapshot,
            verdicts=self._verdicts,
            ready=tuple(cluster_ready(list(self._verdicts), phases).items()),
            kube=self.kube.latest(),
            profile_name=self.profile.name,
            plans=self.plans.index(),
            phases=tuple(phases.items()),
            unusable=self._unusable,
            judged_at=self._judged_at,
            judging_errors=self.judging_errors,
            faults=self.faults,
            mirrors=self.plans.mirrors,
        )

    def _read_platform(self, api: object, request_timeout: float) -> PlatformFacts | None:
        """The cluster add-ons, read only while the profile judges one of them (blocking)."""
        if not PLATFORM_REQUIREMENTS & set(self.profile.requirement_phases()):
            return None
        return read_platform(api, request_timeout)

    def _profile_file_stamp(self) -> tuple[int, int] | None:
        """mtime and size of a profile given by path; None for a shipped one or no file."""
        if self.config.profile in shipped_profiles():
            return None
        try:
            st = os.stat(self.config.profile)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def reload_profile(self) -> bool:
        """Re-reads a profile file that changed; a broken one is logged and the old kept.

        A new profile means new probe plans: every agent gets its new plan in the
        ack of its next report and probes it from its next cycle.
        """
        stamp = self._profile_file_stamp()
        if stamp is None or stamp == self._profile_stamp:
            return False
        self._profile_stamp = stamp
        try:
            profile = load_profile(self.config.profile)
            # A new profile without a mirrored target would leave that mirror unused.
            resolve_mirrors(profile, self.config.mirrors)
        except ConfigError as error:
            log.error(
                "profile %s not reloaded, keeping %s: %s",
                self.config.profile,
                self.profile.name,
                error,
            )
            return False
        self._adopt(profile)
        log.info("profile reloaded from %s: %s", self.config.profile, profile.name)
        return True

    def _adopt(self, profile: Profile) -> None:
        if profile.hysteresis != self.profile.hysteresis:
            self.hysteresis = HysteresisTracker(profile.hysteresis)
        self.profile = profile
        self._profile_generation += 1
        self.plans.set_profile(profile)

    def _judge(
        self, view: Evidence, in_process: bool = False
    ) -> tuple[tuple[Verdict, ...], tuple[tuple[str, str], ...]]:
        # Pure rules over immutable data, plus hysteresis that only this path touches.
        started = time.thread_time()
        elsewhere = 0.0
        child = None if in_process else self.judging_process
        judged = child.evaluate(view) if child is not None else None
        if judged is not None:
            judgement, elsewhere = judged.judgement, judged.cpu_seconds
            self.faults.add("rules", judged.faults)
        else:
            judgement = evaluate_isolated(view, self.faults)
        verdicts = tuple(self.hysteresis.observe(list(judgement.verdicts), view.now))
        # The child's CPU counts too: on a starved machine it is taken from ingest as well.
        self.judging_cpu_seconds = time.thread_time() - started + elsewhere
        return verdicts, judgement.unusable

    async def observe(self, *, amortised: bool = False, in_process: bool = False) -> None:
        """One observation: re-judge when something observable changed since the last.

        `in_process`: judge here even with a judging process (the first judging, of an
        empty state, must not wait for the child to import its modules).

        `amortised` (the observer loop): a judging that cost `c` CPU-seconds is not
        followed by another within c / JUDGING_CPU_SHARE seconds, so that judging a large
        cluster on a starved machine never takes more than that share of a core from
        ingest. A direct call always judges.
        """
        now = time.time()
        if amortised and now < self._judge_not_before:
            return  # verdicts stay as of _judged_at: /readyz and the timestamp say so
        snapshot = self.state.snapshot(now)
        kube = self.kube.latest()
        key = (
            self._profile_generation,
            snapshot.version,
            tuple(map(_up, snapshot.nodes)),  # a C loop: this runs every second
            kube.fetched_at,
            kube.error,
            # Time alone matters too (late reports, marker age): once per heartbeat.
            int(now // self.config.heartbeat_interval),
        )
        if key != self._observed:
            view = Evidence(
                state=snapshot,
                profile=self.profile,
                now=now,
                kube=kube,
                cluster_domain=self.config.cluster_domain,
                mirror_of=tuple((m.target, m.address) for m in self.plans.mirrors),
            )
            # ~80 ms at 10,000 nodes: off the event loop, so gRPC ingest never waits on it.
            self._verdicts, self._unusable = await asyncio.to_thread(self._judge, view, in_process)
            self._observed = key
            self._judge_not_before = now + self.judging_cpu_seconds / JUDGING_CPU_SHARE
        # Unchanged inputs still count as judged: the verdicts are current as of `now`.
        self._judged_at = now

    async def _observe_forever(self) -> None:
        # Observations follow the state, not how often someone scrapes. Supervised: an
        # exception is logged and counted and the loop goes on; a loop that stops
        # completing shows in /readyz and preflight_verdicts_timestamp_seconds.
        while True:
            await asyncio.sleep(EVALUATION_INTERVAL_SECONDS)
            try:
                self.reload_profile()
                await self.observe(amortised=True)
            except Exception:
                self.judging_errors += 1
                log.exception("judging failed (%d failures so far)", self.judging_errors)

    def scraped_recently(self) -> bool:
        """A /metrics request within PREPARE_WHILE_SCRAPED_SECONDS; before the first one,
        the start counts as one: Prometheus scrapes a new collector within an interval,
        and that first scrape after a restart should not have to format every node."""
        last = self.web.last_scrape
        if last is None:
            last = self._created
        return time.monotonic() - last <= PREPARE_WHILE_SCRAPED_SECONDS

    def prepare_due(self) -> bool:
        """Whether to format changed nodes ahead now: someone scrapes, and the next scrape
        is due within its lead (PREPARE_LEAD_SECONDS; or its interval is not known yet)."""
        if not self.scraped_recently():
            return False
        expected = self.web.next_scrape_expected()
        lead = PREPARE_LEAD_SECONDS + 2 * self.prepare_took
        return expected is None or time.monotonic() >= expected - lead

    async def prepare_metrics(self) -> bool:
        """Pre-encodes the changed nodes' /metrics text when due; True if it did."""
        if not self.prepare_due():
            return False
        started = time.monotonic()
        await asyncio.to_thread(self.exposition.prepare, self.current_view())
        took = time.monotonic() - started
        self.prepare_took = max(took, PREPARE_TOOK_DECAY * self.prepare_took)
        return True

    async def _prepare_forever(self) -> None:
        # Its own task: a slow pre-encoding never delays judging. Supervised like judging.
        while True:
            await asyncio.sleep(PREPARE_INTERVAL_SECONDS)
            try:
                await self.prepare_metrics()
            except Exception:
                log.exception("pre-encoding /metrics failed; scrapes render it themselves")

    async def start(self) -> None:
        self._http = web.AppRunner(
            self.web.app,
            access_log=None,
            shutdown_timeout=SHUTDOWN_STEP_SECONDS / 2,
            keepalive_timeout=HEADER_TIMEOUT_SECONDS,
            lingering_time=BODY_LINGER_SECONDS,
        )
        await self._http.setup()
        host, port = split_address(self.config.listen.http)
        site = web.TCPSite(self._http, host, port)
        await site.start()
        self.http_port = self._http.addresses[0][1]
        self._warn_if_exposed()
        credentials = self.certificates.credentials() if self.certificates else None
        # Report runs on its own handler threads (collector/ingest.py), not on this loop.
        self._grpc, self.grpc_port = start_grpc_server(
            self.servicer, self.config.listen.grpc, credentials
        )
        for child in (self.metrics_encoder, self.judging_process):
            if child is not None:
                child.start()
        await self.kube.start()
        try:
            await self.observe(in_process=True)
        except Exception:
            self.judging_errors += 1
            log.exception("first judging failed; the observer keeps trying")
        self._observer = asyncio.create_task(self._observe_forever())
        self._preparer = asyncio.create_task(self._prepare_forever())
        log.info("collector: gRPC on :%d, HTTP on :%d", self.grpc_port, self.http_port)

    def _warn_if_exposed(self) -> None:
        host, _ = split_address(self.config.listen.grpc)
        if is_loopback(host):
            return
        if self.config.auth.mode == "none":
            log.warning(
                "gRPC listens on %s with auth.mode none: anyone who reaches the port can "
                "report for any node (see docs/security.md)",
                self.config.listen.grpc,
            )
        if not self.config.tls.enabled:
            log.warning(
                "gRPC listens on %s without TLS: reports and agent tokens travel in clear",
                self.config.listen.grpc,
            )

    async def stop(self) -> None:
        """Stops every part, each within a bound: a SIGTERM must end the process promptly."""
        if self._observer is not None:
            self._observer.cancel()
            await _bounded("observer", self._observer)
            self._observer = None
        if self._preparer is not None:
            self._preparer.cancel()
            await _bounded("metrics pre-encoder", self._preparer)
            self._preparer = None
        await _bounded("Kubernetes watcher", self.kube.stop())
        if self._grpc is not None:
            await _bounded("gRPC server", self._grpc.stop(grace=1.0))
            self._grpc = None
        if self._http is not None:
            await _bounded("HTTP server", self._http.cleanup())
            self._http = None
        if self.metrics_encoder is not None:
            await _bounded("metrics encoder", asyncio.to_thread(self.metrics_encoder.close))
        if self.judging_process is not None:
            await _bounded("judging process", asyncio.to_thread(self.judging_process.close))
        self.authenticator.close()
