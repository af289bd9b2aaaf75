"""Runs the probes: each concurrently under its own deadline, every cycle, on a jittered schedule.

This is the one place where an exception or a missed deadline becomes data (a
ProbeFailure in the snapshot) instead of a crash. It also decides when to push:
at once when an outcome changed, otherwise at least every heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

from agent.blocking import BlockingExecutor, DeadlineExceeded, KeyBusy, PoolExhausted
from agent.config import AgentConfig
from agent.kinds import KINDS, KindContext
from agent.kinds.base import Probe
from agent.plan import AgentPlan
from agent.snapshot import ProbeFailure, Snapshot, build_report
from preflight.v1 import report_pb2 as pb

log = logging.getLogger(__name__)

T = TypeVar("T")


DISTRIBUTION = "runai_preflight"


def agent_version() -> str:
    """The installed package's version, read from its dist-info METADATA.

    What importlib.metadata.version() returns, without importing importlib.metadata:
    that pulls in email, zipfile and csv, +3.4 MiB of resident memory for one string
    (docs/performance.md, "Agent footprint").
    """
    for entry in sys.path:
        try:
            candidates = sorted(Path(entry or ".").glob(f"{DISTRIBUTION}-*.dist-info"))
        except OSError:
            continue
        for info in candidates:
            try:
                lines = (info / "METADATA").read_text(encoding="utf-8").splitlines()
            except OSError:
                continue
            for line in lines:
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip()
    return "0.0.0+unknown"


@dataclass(frozen=True)
class BoundProbe:
    """One kind's probe, built for this agent, and the deadline it runs under."""

    run: Probe[Any]
    deadline: float


@dataclass
class ProbeSet:
    """The probes of one agent, by kind name (every name a kind of agent.kinds.KINDS)."""

    probes: dict[str, BoundProbe]
    close: Callable[[], Awaitable[None]] | None = None
    # The probe plan the egress and mount probes follow (None: fixed probes, tests).
    plan: AgentPlan | None = None

    def __post_init__(self) -> None:
        known = {k.name for k in KINDS}
        unknown = sorted(set(self.probes) - known)
        if unknown:
            raise ValueError(f"unknown probe kinds {unknown}; registered: {sorted(known)}")

    @classmethod
    def of(
        cls,
        *,
        close: Callable[[], Awaitable[None]] | None = None,
        plan: AgentPlan | None = None,
        **probes: tuple[Probe[Any], float],
    ) -> ProbeSet:
        """Injected probes (tests, benchmarks): kind=(probe, deadline seconds)."""
        bound = {name: BoundProbe(run, deadline) for name, (run, deadline) in probes.items()}
        return cls(bound, close=close, plan=plan)


def default_probes(config: AgentConfig, node_name: str, plan: AgentPlan | None = None) -> ProbeSet:
    """The real probes of every registered kind, reading the host through `config.host_root`.

    They follow `plan`; without one, the plan of the configured packaged profile.
    """
    from agent.hostfs import HostFS

    ctx = KindContext(
        config=config,
        node_name=node_name,
        plan=plan or AgentPlan(config),
        host=HostFS(Path(config.host_root)),
        blocking=BlockingExecutor(max_workers=2, name="preflight-host-facts"),
    )
    probes = {k.name: BoundProbe(k.build(ctx), k.deadline(config)) for k in KINDS}
    return ProbeSet(probes, close=ctx.close, plan=ctx.plan)


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
    kinds = [k for k in KINDS if k.name in probes.probes]
    outcomes = await asyncio.gather(
        *(
            _guarded(k.name, probes.probes[k.name].run, probes.probes[k.name].deadline)
            for k in kinds
        )
    )
    return Snapshot(
        results={
            k.name: result
            for k, (result, _) in zip(kinds, outcomes, strict=True)
            if result is not None
        },
        failures=[failure for _, failure in outcomes if failure is not None],
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
