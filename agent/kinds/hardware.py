"""Probe kind `hardware`: CPU, memory, OS and the kubelet/runtime filesystems."""

from __future__ import annotations

from agent.config import AgentConfig
from agent.kinds.base import KindContext, Probe, ProbeKind
from agent.probes import results as r
from agent.report import hardware_facts
from preflight.v1 import report_pb2 as pb


def build(ctx: KindContext) -> Probe[r.HardwareFacts]:
    from agent.probes.hardware import collect_hardware

    host, timeout = ctx.host, ctx.config.probe_timeout
    # statvfs of kubelet/runtime dirs may sit on a dead NFS: the stuck bookkeeping
    # of the shared executor keeps a hung call from being started twice.
    return lambda: ctx.blocking.run("hardware", lambda: collect_hardware(host), timeout)


def section(report: pb.NodeReport, facts: r.HardwareFacts) -> None:
    report.hardware.CopyFrom(hardware_facts(facts))


def text(report: pb.NodeReport) -> list[str]:
    hw = report.hardware
    return [
        f"hardware: {hw.logical_cores} logical / {hw.physical_cores} physical cores "
        f"({hw.cpu_model or 'unknown CPU'}), memory {hw.memory_total_bytes / 2**30:.1f} GiB, "
        f"{hw.os_release or 'unknown OS'}, kernel {hw.kernel_release or '?'}"
    ]


def _deadline(config: AgentConfig) -> float:
    return config.probe_timeout


KIND = ProbeKind[r.HardwareFacts](
    name="hardware",
    build=build,
    deadline=_deadline,
    signature=lambda facts: (facts.logical_cores, facts.memory_total_bytes),
    section=section,
    text=text,
)
