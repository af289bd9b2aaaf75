"""Prometheus exposition: a custom collector rendering one immutable snapshot.

Nothing here touches live state: the web layer hands over a StateSnapshot and the
verdicts computed from it, and rendering runs off the event loop so a big scrape
never stalls gRPC ingest.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collector.rules.model import STATUSES
from collector.view import CollectorView
from preflight.enums import MOUNT_STATES, PHASES, REASONS, WRITE_CHECKS
from preflight.v1 import report_pb2 as pb

ISSUER_LABEL_MAX = 64


def _gauge(name: str, doc: str, labels: Iterable[str], unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels), unit=unit)


class SnapshotCollector(Collector):
    def __init__(self, data: CollectorView) -> None:
        self.data = data

    def collect(self) -> Iterator[Metric]:
        yield from self._cluster()
        yield from self._agents()
        yield from self._egress()
        yield from self._nodes()
        yield from self._mounts()

    def _cluster(self) -> Iterator[Metric]:
        status = _gauge(
            "preflight_requirement_status",
            "1 for the current status of each requirement (one-hot over pass/warn/fail/unknown).",
            ["requirement", "status"],
        )
        for verdict in self.data.verdicts:
            for s in STATUSES:
                status.add_metric([verdict.requirement, s], 1.0 if verdict.status == s else 0.0)
        yield status
        ready = _gauge(
            "preflight_cluster_ready",
            "1 when every requirement of the phase passes or warns.",
            ["phase"],
        )
        for phase, ok in self.data.ready:
            ready.add_metric([phase], 1.0 if ok else 0.0)
        yield ready
        kube = _gauge(
            "preflight_kubernetes_node_info",
            "One series per Kubernetes node, from the Kubernetes API.",
            ["node", "control_plane"],
        )
        for name, control_plane in self.data.kubernetes_nodes:
            kube.add_metric([name, "true" if control_plane else "false"], 1.0)
        yield kube
        state = self.data.state
        received = CounterMetricFamily(
            "preflight_reports_received", "Reports accepted since the collector started."
        )
        received.add_metric([], float(state.reports_received))
        yield received
        rejected = CounterMetricFamily(
            "preflight_reports_rejected", "Reports rejected, by reason.", labels=["reason"]
        )
        for reason, count in state.rejected:
            rejected.add_metric([reason], float(count))
        yield rejected

    def _agents(self) -> Iterator[Metric]:
        up = _gauge("preflight_agent_up", "1 while the node's agent reports in time.", ["node"])
        last = _gauge(
            "preflight_agent_last_report_timestamp_seconds",
            "When the collector last accepted a report from the node.",
            ["node"],
        )
        skew = _gauge(
            "preflight_agent_clock_skew_seconds",
            "Agent clock minus collector clock at the last report (includes network delay).",
            ["node"],
        )
        for node in self.data.state.nodes:
            up.add_metric([node.name], 1.0 if node.up else 0.0)
            last.add_metric([node.name], node.received_at)
            skew.add_metric([node.name], node.clock_skew_seconds)
        yield from (up, last, skew)

    def _egress(self) -> Iterator[Metric]:
        labels = ["node", "target"]
        up = _gauge("preflight_egress_up", "1 when the node reaches the target.", labels)
        failure = _gauge(
            "preflight_egress_failure",
            "1 for the current failure reason of an unreachable target.",
            [*labels, "reason"],
        )
        phase = _gauge(
            "preflight_egress_phase_duration_seconds",
            "Duration of each phase reached in the last probe.",
            [*labels, "phase"],
        )
        last_success = _gauge(
            "preflight_egress_last_success_timestamp_seconds",
            "Start of the last probe that reached the target.",
            labels,
        )
        proxy = _gauge(
            "preflight_egress_proxy_used", "1 when the probe went through a proxy.", labels
        )
        untrusted = _gauge(
            "preflight_egress_tls_untrusted_certificate_info",
            "The certificate presented when TLS did not verify (e.g. an inspecting proxy).",
            [*labels, "issuer", "fingerprint_sha256"],
        )
        not_after = _gauge(
            "preflight_egress_tls_cert_not_after_timestamp_seconds",
            "Earliest certificate expiry seen for the target across nodes.",
            ["target"],
        )
        earliest: dict[str, float] = {}
        for node in self.data.state.nodes:
            for e in node.report.egress:
                key = [node.name, e.target]
                is_up = e.outcome == pb.OUTCOME_UP
                up.add_metric(key, 1.0 if is_up else 0.0)
                proxy.add_metric(key, 1.0 if e.proxy_used else 0.0)
                if not is_up and e.reason:
                    failure.add_metric([*key, REASONS.name(e.reason)], 1.0)
                for timing in e.phases:
                    phase.add_metric([*key, PHASES.name(timing.phase)], timing.duration_seconds)
                cert = e.certificate
                if e.HasField("certificate") and cert.HasField("not_after"):
                    expiry = cert.not_after.ToNanoseconds() / 1e9
                    earliest[e.target] = min(expiry, earliest.get(e.target, expiry))
                if e.reason == pb.REASON_TLS_UNTRUSTED and e.HasField("certificate"):
                    issuer = cert.issuer[:ISSUER_LABEL_MAX]
                    untrusted.add_metric([*key, issuer, cert.sha256_fingerprint], 1.0)
            for target, seconds in node.last_success:
                last_success.add_metric([node.name, target], seconds)
        for target, expiry in sorted(earliest.items()):
            not_after.add_metric([target], expiry)
        yield from (up, failure, phase, last_success, proxy, untrusted, not_after)

    def _nodes(self) -> Iterator[Metric]:
        cpu = _gauge("preflight_node_cpu_cores", "Logical CPU cores.", ["node"])
        memory = _gauge("preflight_node_memory_bytes", "Total memory.", ["node"])
        gpus = _gauge("preflight_node_gpus", "GPUs by source.", ["node", "source"])
        info = _gauge(
            "preflight_node_info",
            "Node facts as labels.",
            ["node", "kernel", "os", "arch", "agent_version"],
        )
        allocatable = dict(self.data.allocatable_gpus)
        for node in self.data.state.nodes:
            report = node.report
            if report.HasField("hardware"):
                cpu.add_metric([node.name], float(report.hardware.logical_cores))
                memory.add_metric([node.name], float(report.hardware.memory_total_bytes))
            if report.HasField("gpus"):
                gpus.add_metric([node.name, "pci"], float(report.gpus.pci_count))
                gpus.add_metric([node.name, "driver"], float(report.gpus.driver_count))
            if node.name in allocatable:
                gpus.add_metric([node.name, "allocatable"], float(allocatable[node.name]))
            hw = report.hardware
            info.add_metric(
                [
                    node.name,
                    hw.kernel_release,
                    hw.os_release,
                    hw.architecture,
                    report.agent_version,
                ],
                1.0,
            )
        yield from (cpu, memory, gpus, info)

    def _mounts(self) -> Iterator[Metric]:
        labels = ["node", "path"]
        up = _gauge("preflight_mount_up", "1 when a filesystem is mounted at the path.", labels)
        writable = _gauge(
            "preflight_mount_writable", "1 when the write round-trip succeeded.", labels
        )
        stuck = _gauge("preflight_mount_stuck", "1 while a call on the path is blocked.", labels)
        peers = _gauge("preflight_mount_peers_visible", "Peer markers visible on the path.", labels)
        for node in self.data.state.nodes:
            for m in node.report.mounts:
                key = [node.name, m.path]
                state = MOUNT_STATES.name(m.state)
                up.add_metric(key, 1.0 if state == "mounted" else 0.0)
                writable.add_metric(key, 1.0 if WRITE_CHECKS.name(m.write_check) == "ok" else 0.0)
                stuck.add_metric(key, 1.0 if state == "stuck" else 0.0)
                peers.add_metric(key, float(len(m.marker.peers)))
        yield from (up, writable, stuck, peers)


def render(data: CollectorView) -> bytes:
    """The text exposition of `data`; CPU-bound, call it from a worker thread."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(data))
    return generate_latest(registry)
