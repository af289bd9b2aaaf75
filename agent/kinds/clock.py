"""Probe kind `clock`: the kernel's NTP state (adjtimex, read only) for clock_sync."""

from __future__ import annotations

import asyncio

from agent.config import AgentConfig
from agent.kinds.base import KindContext, Probe, ProbeKind
from agent.probes.clock import ClockFacts, read_clock
from agent.report import clock_facts
from preflight.v1 import report_pb2 as pb


def build(ctx: KindContext) -> Probe[ClockFacts]:
    # One non-blocking syscall; a worker thread keeps even a slow libc load off the loop.
    return lambda: asyncio.to_thread(read_clock)


def section(report: pb.NodeReport, facts: ClockFacts) -> None:
    report.clock.CopyFrom(clock_facts(facts))


def text(report: pb.NodeReport) -> list[str]:
    clock = report.clock
    if not clock.available:
        return [f"clock: kernel NTP state unknown ({clock.error or 'not probed'})"]
    synced = "NTP-synchronised" if clock.synchronised else "NOT synchronised"
    return [
        f"clock: {synced} (state {clock.state}, estimated error "
        f"{clock.estimated_error_seconds * 1000:.1f} ms, maximum "
        f"{clock.maximum_error_seconds * 1000:.1f} ms)"
    ]


def _deadline(config: AgentConfig) -> float:
    return config.probe_timeout


KIND = ProbeKind[ClockFacts](
    name="clock",
    build=build,
    deadline=_deadline,
    # The errors drift every second; only a change of synchronisation is pushed at once.
    signature=lambda facts: (facts.available, facts.synchronised),
    section=section,
    text=text,
)
