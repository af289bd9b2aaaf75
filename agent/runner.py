"""Runs the probes: each concurrently under its own deadline, every cycle, on a jittered schedule.

This is the one place where an exception or a missed deadline becomes data (a
ProbeFailure in the snapshot) instead of a crash. It also decides when to push:
at once when an outcome changed, otherwise at least every heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

from agent.blocking import BlockingExecutor, DeadlineExceeded, KeyBusy, PoolExhausted
from agent.config import AgentConfig
from agent.plan import AgentPlan
from agent.probes import results as r
from agent.report import ProbeFailure, Snapshot, build_report
from preflight.v1 import report_pb2 as pb

log = logging.getLogger(__name__)

T = TypeVar("T")
# A probe is an argument-less coroutine factory: the runner owns the deadline.
Probe = Callable[[], Awaitable[Any]]
# Extra time granted to probes that enforce their own deadlines before the runner's fires.
DEADLINE_SLACK_SECONDS = 2.0


def agent_version() -> str:
    try:
        return metadata.version("runai-preflight")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


@dataclass
class ProbeSet:
    """The probes of one agent and the deadline each runs under."""

    hardware: Callable[[], Awaitable[r.HardwareFacts]]
    gpus: Callable[[], Awaitable[r.GpuFacts]]
    mounts: Callable[[], Awaitable[list[r.MountResult]]]
    egress: Callable[[], Awaitable[list[r.EgressResult]]]
    hardware_timeout: float
    gpus_timeout: float
    mounts_timeout: float
    egress_timeout: float
    close: Callable[[], Awaitable[None]] | None = None
    # The probe plan the egress and mount probes follow (None: fixed probes, tests).
    plan: AgentPlan | None = None


def default_probes(config: AgentConfig, node_name: str, plan: AgentPlan | None = None) -> ProbeSet:
    """The real probes, reading the host through `config.host_root`, following `plan`.

    Without a plan they follow the plan of the configured packaged profile.
    """
    from agent.hostfs import HostFS
    from agent.probes.egress import probe_targets
    from agent.probes.gpu import collect_gpus
    from agent.probes.hardware import collect_hardware
    from agent.probes.mounts import MountProber

    plan = plan or AgentPlan(config)
    host = HostFS(Path(config.host_root))
    mounts = MountProber(host, node_name, config.mounts, lambda: plan.current.volumes)
    # Hardware reads statvfs of kubelet/runtime dirs, which may sit on a dead NFS:
    # the same stuck bookkeeping as mounts, so a hung call is never started twice.
    blocking = BlockingExecutor(max_workers=2, name="preflight-host-facts")
    # Plan targets use egress.timeout; only local targets carry their own.
    slowest_target = max(
        (t.timeout or config.egress.timeout for t in config.egress.targets),
        default=config.egress.timeout,
    )

    async def egress() -> list[r.EgressResult]:
        return await probe_targets(plan.current.targets, config.egress)

    return ProbeSet(
        hardware=lambda: blocking.run(
            "hardware", lambda: collect_hardware(host), config.probe_timeout
        ),
        gpus=lambda: blocking.run("gpus", lambda: collect_gpus(host), config.probe_timeout),
        mounts=mounts.probe,
        egress=egress,
        hardware_timeout=config.probe_timeout,
        gpus_timeout=config.probe_timeout,
        mounts_timeout=config.mounts.timeout + DEADLINE_SLACK_SECONDS,
        egress_timeout=slowest_target + DEADLINE_SLACK_SECONDS,
        close=mounts.close,
        plan=plan,
    )


async def _guarded(
    name: str, probe: Callable[[], Awaitable[T]], timeout: float
) -> tuple[T | None, ProbeFailure | None]:
    started = time.perf_counter()
    try:
        return await asyncio.wait_for(probe(), timeout), None
    except (TimeoutError, DeadlineExceeded, PoolExhausted):
        elapsed = time.perf_counter() - started
        return None, ProbeFailure(name, f"missed its {timeout:g}s deadline", True, elapsed)
    except KeyBusy:
        elapsed = time.perf_counter() - started
        return None, ProbeFailure(name, "previous call still blocked", True, elapsed)
    except Exception as error:  # any probe error is data, never a crash
        log.exception("probe %s failed", name)
        elapsed = time.perf_counter() - started
        return None, ProbeFailure(name, f"{type(error).__name__}: {error}", False, elapsed)


async def run_cycle(probes: ProbeSet) -> Snapshot:
    """All probes at once; the cycle lasts about as long as the slowest one."""
    # The plan in force when the cycle starts is the one its results were probed under.
    plan = probes.plan.current if probes.plan is not None else None
    (
        (hardware, hw_fail),
        (gpus, gpu_fail),
        (mounts, mnt_fail),
        (egress, eg_fail),
    ) = await asyncio.gather(
        _guarded("hardware", probes.hardware, probes.hardware_timeout),
        _guarded("gpus", probes.gpus, probes.gpus_timeout),
        _guarded("mounts", probes.mounts, probes.mounts_timeout),
        _guarded("egress", probes.egress, probes.egress_timeout),
    )
    return Snapshot(
        hardware=hardware,
        gpus=gpus,
        mounts=mounts or [],
        egress=egress or [],
        failures=[f for f in (hw_fail, gpu_fail, mnt_fail, eg_fail) if f is not None],
        plan=plan,
    )


def jittered(interval: float, fraction: float = 0.1) -> float:
    return interval * random.uniform(1 - fraction, 1 + fraction)


class Agent:
    """Probe, decide whether to push, hand the report to `submit`; forever."""

    def __init__(
        self,
        config: AgentConfig,
        node_name: str,
        probes: ProbeSet,
        submit: Callable[[pb.NodeReport], None],
    ) -> None:
        self.config = config
        self.node_name = node_name
        self.probes = probes
        self.submit = submit
        self.instance_id = uuid4().hex
        self.sequence = 0
        self.heartbeat_interval = config.heartbeat_interval
        self._stopping = asyncio.Event()
        # Set to cut a sleep short: on stop, and when a new probe plan arrives.
        self._wake = asyncio.Event()
        self._replan = False

    def adopt_heartbeat(self, seconds: float) -> None:
        """The collector's ReportAck says which heartbeat it wants."""
        if seconds > 0:
            self.heartbeat_interval = seconds

    def adopt_ack(self, ack: pb.ReportAck) -> None:
        """Heartbeat and probe plan from a ReportAck; a new plan is probed at once."""
        self.adopt_heartbeat(ack.heartbeat_interval_seconds)
        if self.probes.plan is not None and self.probes.plan.adopt(ack.plan):
            self._replan = True
            self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def _push(self, snapshot: Snapshot) -> None:
        self.sequence += 1
        self.submit(
            build_report(
                snapshot,
                node_name=self.node_name,
                agent_version=agent_version(),
                instance_id=self.instance_id,
                sequence=self.sequence,
                probe_interval=self.config.probe_interval,
                heartbeat_interval=self.heartbeat_interval,
            )
        )

    async def _sleep(self, seconds: float) -> bool:
        """Sleeps; True when asked to stop meanwhile (a new plan only cuts it short)."""
        try:
            await asyncio.wait_for(self._wake.wait(), max(seconds, 0))
        except TimeoutError:
            return False
        self._wake.clear()
        return self._stopping.is_set()

    async def run(self) -> None:
        last_signature: object = None
        last_push = 0.0
        snapshot = Snapshot()
        next_probe = time.monotonic()
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                if self._replan:
                    # The next cycle, not the next heartbeat: probe the new plan now.
                    self._replan = False
                    next_probe = now
                if now >= next_probe:
                    snapshot = await run_cycle(self.probes)
                    next_probe = now + jittered(self.config.probe_interval)
                    signature = snapshot.outcome_signature()
                    if signature != last_signature:
                        last_signature = signature
                        self._push(snapshot)
                        last_push = time.monotonic()
                if time.monotonic() - last_push >= self.heartbeat_interval:
                    self._push(snapshot)
                    last_push = time.monotonic()
                wake = min(next_probe, last_push + self.heartbeat_interval)
                if await self._sleep(wake - time.monotonic()):
                    break
        finally:
            if self.probes.close is not None:
                await self.probes.close()
