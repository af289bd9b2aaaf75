"""Turns probe results (agent.probes.results) into the wire NodeReport, and renders it.

The only agent module besides the client that knows the generated protobuf code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from agent.plan import Effective
from agent.probes import results as r
from preflight.enums import (
    DRIVER_STATUSES,
    KERNEL_MODULES,
    MOUNT_STATES,
    PHASES,
    REASONS,
    WRITE_CHECKS,
)
from preflight.v1 import report_pb2 as pb


@dataclass
class ProbeFailure:
    """A probe that produced no section at all: it raised or missed its deadline."""

    probe: str
    message: str
    timed_out: bool
    duration_seconds: float


@dataclass
class Snapshot:
    """Everything one probe cycle found, before it becomes a NodeReport."""

    hardware: r.HardwareFacts | None = None
    gpus: r.GpuFacts | None = None
    mounts: list[r.MountResult] = field(default_factory=list)
    egress: list[r.EgressResult] = field(default_factory=list)
    failures: list[ProbeFailure] = field(default_factory=list)
    # The probe plan the cycle ran under (None: probes without a plan, tests).
    plan: Effective | None = None

    def outcome_signature(self) -> tuple[object, ...]:
        """What must be pushed at once when it changes (not timings or free space)."""
        return (
            # A new plan is pushed at once, so the collector sees it adopted.
            None if self.plan is None else self.plan.version,
            tuple((e.target, e.up, e.reason, e.failed_phase) for e in self.egress),
            tuple(
                (
                    m.path,
                    m.state,
                    m.write_check,
                    m.read_only,
                    m.fs_type,
                    m.source,
                    m.network_filesystem,
                    len(m.marker.peers) if m.marker else 0,
                )
                for m in self.mounts
            ),
            None
            if self.gpus is None
            else (
                len(self.gpus.pci_devices),
                self.gpus.driver_status,
                len(self.gpus.devices),
                self.gpus.kernel_module,
                self.gpus.kernel_driver_count(),
                self.gpus.passthrough_count(),
            ),
            None
            if self.hardware is None
            else (self.hardware.logical_cores, self.hardware.memory_total_bytes),
            tuple(sorted((f.probe, f.timed_out) for f in self.failures)),
        )


def timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def _hardware(facts: r.HardwareFacts) -> pb.HardwareFacts:
    message = pb.HardwareFacts(
        cpu_model=facts.cpu_model,
        logical_cores=facts.logical_cores,
        physical_cores=facts.physical_cores,
        memory_total_bytes=facts.memory_total_bytes,
        memory_available_bytes=facts.memory_available_bytes,
        kernel_release=facts.kernel_release,
        os_release=facts.os_release,
        architecture=facts.architecture,
        filesystems=[
            pb.FilesystemUsage(
                role=fs.role,
                path=fs.path,
                capacity_bytes=fs.capacity_bytes,
                free_bytes=fs.free_bytes,
            )
            for fs in facts.filesystems
        ],
    )
    if facts.boot_time is not None:
        message.boot_time.CopyFrom(timestamp(facts.boot_time))
    return message


def _gpus(facts: r.GpuFacts) -> pb.GpuFacts:
    return pb.GpuFacts(
        pci_scanned=facts.pci_scanned,
        pci_count=len(facts.pci_devices),
        pci_devices=[
            pb.PciDevice(
                address=d.address,
                vendor_id=d.vendor_id,
                device_id=d.device_id,
                class_code=d.class_code,
                kernel_driver=d.kernel_driver,
            )
            for d in facts.pci_devices
        ],
        driver_status=DRIVER_STATUSES.number(facts.driver_status),  # type: ignore[arg-type]
        driver_message=facts.driver_message,
        driver_count=len(facts.devices),
        driver_version=facts.driver_version,
        cuda_version=facts.cuda_version,
        devices=[
            pb.GpuDevice(
                index=d.index,
                uuid=d.uuid,
                name=d.name,
                memory_total_bytes=d.memory_total_bytes,
                pci_bus_id=d.pci_bus_id,
                mig_enabled=d.mig_enabled,
            )
            for d in facts.devices
        ],
        kernel_module=KERNEL_MODULES.number(facts.kernel_module)  # type: ignore[arg-type]
        if facts.kernel_module != "unknown"
        else pb.KERNEL_MODULE_UNSPECIFIED,
        kernel_module_version=facts.kernel_module_version,
        kernel_driver_count=facts.kernel_driver_count(),
        passthrough_count=facts.passthrough_count(),
        kernel_gpus=[
            pb.KernelGpu(
                bus_location=g.bus_location, model=g.model, uuid=g.uuid, excluded=g.excluded
            )
            for g in facts.kernel_gpus
        ],
    )


def _mount(result: r.MountResult) -> pb.MountResult:
    message = pb.MountResult(
        path=result.path,
        state=MOUNT_STATES.number(result.state),  # type: ignore[arg-type]
        fs_type=result.fs_type,
        source=result.source,
        read_only=result.read_only,
        network_filesystem=result.network_filesystem,
        options=result.options,
        capacity_bytes=result.capacity_bytes,
        free_bytes=result.free_bytes,
        write_check=WRITE_CHECKS.number(result.write_check),  # type: ignore[arg-type]
        write_latency_seconds=result.write_latency_seconds,
        message=result.message,
        duration_seconds=result.duration_seconds,
    )
    if result.marker is not None:
        marker = message.marker
        marker.nonce = result.marker.nonce
        marker.written_at.CopyFrom(timestamp(result.marker.written_at))
        marker.markers_seen = result.marker.markers_seen
        for peer in result.marker.peers:
            marker.peers.add(
                node_name=peer.node_name, nonce=peer.nonce, written_at=timestamp(peer.written_at)
            )
    return message


def _certificate(cert: r.Certificate) -> pb.Certificate:
    message = pb.Certificate(
        subject=cert.subject,
        issuer=cert.issuer,
        sha256_fingerprint=cert.sha256_fingerprint,
        dns_names=cert.dns_names,
        verified=cert.verified,
        tls_version=cert.tls_version,
        trusted_by_extra_ca=cert.trusted_by_extra_ca,
    )
    if cert.not_before is not None:
        message.not_before.CopyFrom(timestamp(cert.not_before))
    if cert.not_after is not None:
        message.not_after.CopyFrom(timestamp(cert.not_after))
    return message


def _reason(reason: str | None) -> int:
    return REASONS.number(reason) if reason else pb.REASON_NONE


def _egress(result: r.EgressResult) -> pb.EgressResult:
    message = pb.EgressResult(
        target=result.target,
        url=result.url,
        outcome=pb.OUTCOME_UP if result.up else pb.OUTCOME_DOWN,
        reason=_reason(result.reason),  # type: ignore[arg-type]
        failed_phase=PHASES.number(result.failed_phase) if result.failed_phase else 0,  # type: ignore[arg-type]
        message=result.message,
        phases=[
            pb.PhaseTiming(phase=PHASES.number(phase), duration_seconds=seconds)  # type: ignore[arg-type]
            for phase, seconds in result.phases.items()
        ],
        total_seconds=result.total_seconds,
        connected_address=result.connected_address,
        proxy_used=result.proxy_used,
        proxy=result.proxy,
        proxy_connect_status=result.proxy_connect_status,
        http_status=result.http_status,
        time_to_first_byte_seconds=result.time_to_first_byte_seconds,
    )
    if result.started_at:
        message.started_at.CopyFrom(timestamp(result.started_at))
    if result.dns is not None:
        message.dns.CopyFrom(
            pb.DnsResult(
                addresses=result.dns.addresses,
                family=result.dns.family,
                reason=_reason(result.dns.reason),  # type: ignore[arg-type]
                message=result.dns.message,
                duration_seconds=result.dns.duration_seconds,
            )
        )
    if result.certificate is not None:
        message.certificate.CopyFrom(_certificate(result.certificate))
    return message


def build_report(
    snapshot: Snapshot,
    *,
    node_name: str,
    agent_version: str,
    instance_id: str,
    sequence: int,
    probe_interval: float,
    heartbeat_interval: float,
) -> pb.NodeReport:
    report = pb.NodeReport(
        node_name=node_name,
        agent_version=agent_version,
        instance_id=instance_id,
        sequence=sequence,
        probe_interval_seconds=probe_interval,
        heartbeat_interval_seconds=heartbeat_interval,
        mounts=[_mount(m) for m in snapshot.mounts],
        egress=[_egress(e) for e in snapshot.egress],
        probe_errors=[
            pb.ProbeError(
                probe=f.probe,
                message=f.message,
                timed_out=f.timed_out,
                duration_seconds=f.duration_seconds,
            )
            for f in snapshot.failures
        ],
    )
    if snapshot.plan is not None:
        report.plan_version = snapshot.plan.version
        report.plan_source = snapshot.plan.source  # type: ignore[assignment]
        report.local_targets.extend(snapshot.plan.local_targets)
        report.local_volumes.extend(snapshot.plan.local_volumes)
    if snapshot.hardware is not None:
        report.hardware.CopyFrom(_hardware(snapshot.hardware))
    if snapshot.gpus is not None:
        report.gpus.CopyFrom(_gpus(snapshot.gpus))
    return report


def to_json(report: pb.NodeReport) -> str:
    """The protobuf JSON mapping, with enum names and zero values kept for readability."""
    data = json_format.MessageToDict(report, always_print_fields_with_no_presence=True)
    return json.dumps(data, indent=2, sort_keys=False)


def _egress_line(e: pb.EgressResult) -> str:
    phases = " ".join(f"{PHASES.name(p.phase)}={p.duration_seconds * 1000:.1f}ms" for p in e.phases)
    if e.outcome == pb.OUTCOME_UP:
        status = f"UP   http {e.http_status}"
    else:
        status = f"DOWN {REASONS.name(e.reason)} in {PHASES.name(e.failed_phase) or '?'}"
    via = f" via proxy {e.proxy}" if e.proxy_used else ""
    detail = f"\n      {e.message}" if e.message and e.outcome != pb.OUTCOME_UP else ""
    return f"  {e.target:<40} {status}{via}  [{phases}]{detail}"


def _gpu_line(g: pb.GpuFacts) -> str:
    module = KERNEL_MODULES.name(g.kernel_module) or "unknown"
    version = f" {g.kernel_module_version}" if g.kernel_module_version else ""
    passthrough = f", {g.passthrough_count} passthrough" if g.passthrough_count else ""
    nvml = DRIVER_STATUSES.name(g.driver_status)
    note = f": {g.driver_message}" if g.driver_message else ""
    return (
        f"gpus: pci={g.pci_count} kernel={g.kernel_driver_count} "
        f"(nvidia module {module}{version}{passthrough}) nvml={g.driver_count} ({nvml}{note})"
    )


def to_text(report: pb.NodeReport) -> str:
    """A short human summary for `preflight-agent --once --format text`."""
    hw = report.hardware
    source = pb.PlanSource.Name(report.plan_source).removeprefix("PLAN_SOURCE_").lower()
    local = ", ".join([*report.local_targets, *report.local_volumes])
    lines = [
        f"node {report.node_name} (agent {report.agent_version})",
        f"plan: {report.plan_version or 'none'} ({source})"
        + (f", local: {local}" if local else ""),
        f"hardware: {hw.logical_cores} logical / {hw.physical_cores} physical cores "
        f"({hw.cpu_model or 'unknown CPU'}), memory {hw.memory_total_bytes / 2**30:.1f} GiB, "
        f"{hw.os_release or 'unknown OS'}, kernel {hw.kernel_release or '?'}",
        _gpu_line(report.gpus),
        "mounts:" if report.mounts else "mounts: none configured",
    ]
    for m in report.mounts:
        lines.append(
            f"  {m.path:<40} {MOUNT_STATES.name(m.state)} {m.fs_type} {m.source} "
            f"write={WRITE_CHECKS.name(m.write_check)} {m.message}".rstrip()
        )
    lines.append("egress:")
    lines.extend(_egress_line(e) for e in report.egress)
    lines.extend(
        f"probe {f.probe} failed: {f.message}" + (" (deadline)" if f.timed_out else "")
        for f in report.probe_errors
    )
    return "\n".join(lines)
