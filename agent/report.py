"""Probe results (agent.probes.results) to their NodeReport sections, and the JSON rendering.

The only agent module besides the client, agent.kinds and agent.snapshot that knows
the generated protobuf code. Each probe kind (agent.kinds) writes its section with
one of the mappings below; agent.snapshot assembles the whole report.
"""

from __future__ import annotations

import json

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from agent.probes import results as r
from agent.probes.clock import ClockFacts
from preflight.enums import (
    DRIVER_STATUSES,
    KERNEL_MODULES,
    MOUNT_STATES,
    PHASES,
    REASONS,
    WRITE_CHECKS,
)
from preflight.v1 import report_pb2 as pb


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
                mig_devices=[
                    pb.MigDevice(
                        index=m.index,
                        uuid=m.uuid,
                        name=m.name,
                        memory_total_bytes=m.memory_total_bytes,
                    )
                    for m in d.mig_devices
                ],
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
        # A volume not written to (write not expected) has no marker of its own: leave the
        # time unset rather than send the epoch, which the collector rejects as a timestamp.
        if result.marker.written_at:
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


def clock_facts(facts: ClockFacts) -> pb.ClockFacts:
    return pb.ClockFacts(
        available=facts.available,
        synchronised=facts.synchronised,
        state=facts.state,
        estimated_error_seconds=facts.estimated_error_seconds,
        maximum_error_seconds=facts.maximum_error_seconds,
        error=facts.error,
    )


def to_json(report: pb.NodeReport) -> str:
    """The protobuf JSON mapping, with enum names and zero values kept for readability."""
    data = json_format.MessageToDict(report, always_print_fields_with_no_presence=True)
    return json.dumps(data, indent=2, sort_keys=False)


# The section mappings, by the names the probe kinds use.
hardware_facts = _hardware
gpu_facts = _gpus
mount_result = _mount
egress_result = _egress
