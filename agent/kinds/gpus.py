"""Probe kind `gpus`: NVIDIA devices on the PCI bus and as the driver (NVML) sees them."""

from __future__ import annotations

from agent.config import AgentConfig
from agent.kinds.base import KindContext, Probe, ProbeKind
from agent.probes import results as r
from agent.report import gpu_facts
from preflight.enums import DRIVER_STATUSES, KERNEL_MODULES
from preflight.v1 import report_pb2 as pb


def build(ctx: KindContext) -> Probe[r.GpuFacts]:
    from agent.probes.gpu import collect_gpus

    host, timeout = ctx.host, ctx.config.probe_timeout
    return lambda: ctx.blocking.run("gpus", lambda: collect_gpus(host), timeout)


def signature(facts: r.GpuFacts) -> object:
    return (
        len(facts.pci_devices),
        facts.driver_status,
        len(facts.devices),
        facts.kernel_module,
        facts.kernel_driver_count(),
        facts.passthrough_count(),
        sum(len(d.mig_devices) for d in facts.devices),
    )


def section(report: pb.NodeReport, facts: r.GpuFacts) -> None:
    report.gpus.CopyFrom(gpu_facts(facts))


def text(report: pb.NodeReport) -> list[str]:
    g = report.gpus
    module = KERNEL_MODULES.name(g.kernel_module) or "unknown"
    version = f" {g.kernel_module_version}" if g.kernel_module_version else ""
    passthrough = f", {g.passthrough_count} passthrough" if g.passthrough_count else ""
    nvml = DRIVER_STATUSES.name(g.driver_status)
    note = f": {g.driver_message}" if g.driver_message else ""
    return [
        f"gpus: pci={g.pci_count} kernel={g.kernel_driver_count} "
        f"(nvidia module {module}{version}{passthrough}) nvml={g.driver_count} ({nvml}{note})"
    ]


def _deadline(config: AgentConfig) -> float:
    return config.probe_timeout


KIND = ProbeKind[r.GpuFacts](
    name="gpus", build=build, deadline=_deadline, signature=signature, section=section, text=text
)
