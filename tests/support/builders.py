"""Builders of plain data for collector tests: NodeReports and their sections, NodeEntries,
KubeNodes and ClusterViews (rules, exposition, ingest)."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from collector.kube.facts import KubeFacts, KubeNode
from collector.rules.model import Evidence
from collector.state import AgentReports, NodeEntry
from preflight.enums import REASONS
from preflight.profile import load_profile
from preflight.v1 import report_pb2 as pb

NOW = 1_800_000_000.0
PROFILE = load_profile("runai-2020")
T0 = 1_764_000_000.0  # fixed collector clock of the exposition tests
ALL_TARGETS = tuple(t.name for t in PROFILE.egress.targets)


def report(
    name: str,
    *,
    cores: int = 32,
    memory: int = 256 << 30,
    pci: int = 0,
    driver: int = 0,
    down: dict[str, str] | None = None,
    targets: tuple[str, ...] = ALL_TARGETS,
) -> pb.NodeReport:
    down = down or {}
    message = pb.NodeReport(node_name=name, instance_id="i", sequence=1)
    message.hardware.logical_cores = cores
    message.hardware.memory_total_bytes = memory
    message.gpus.pci_count = pci
    message.gpus.driver_count = driver
    for target in targets:
        reason = down.get(target)
        message.egress.add(
            target=target,
            outcome=pb.OUTCOME_DOWN if reason else pb.OUTCOME_UP,
            reason=REASONS.number(reason) if reason else 0,  # type: ignore[arg-type]
        )
    return message


def entry(message: pb.NodeReport, *, age: float = 1.0, up: bool = True) -> NodeEntry:
    return NodeEntry.of(
        message,
        received_at=NOW - age,
        clock_skew_seconds=0.0,
        first_seen=NOW - 3600,
        up=up,
    )


def kube_node(
    name: str,
    *,
    control_plane: bool = False,
    cpu: float = 32,
    memory: int = 256 << 30,
    gpus: int = 0,
    allocatable_gpus: int | None = None,
    kubelet: str = "v1.17.4",
    taints: tuple[str, ...] = (),
) -> KubeNode:
    return KubeNode(
        name=name,
        control_plane=control_plane,
        roles=("control-plane",) if control_plane else (),
        taints=taints,
        capacity_cpu=cpu,
        capacity_memory_bytes=memory,
        capacity_gpus=gpus,
        allocatable_cpu=cpu,
        allocatable_memory_bytes=memory,
        allocatable_gpus=gpus if allocatable_gpus is None else allocatable_gpus,
        kubelet_version=kubelet,
        container_runtime_version="containerd://1.3.3",
        ready=True,
    )


def view(*entries: NodeEntry, kube: KubeFacts | None = None, heartbeat: float = 30.0) -> Evidence:
    state = AgentReports(
        taken_at=NOW,
        nodes=tuple(sorted(entries, key=lambda e: e.name)),
        stale_after_seconds=heartbeat * 3,
        heartbeat_interval=heartbeat,
        reports_received=len(entries),
        rejected=(),
        version=1,
    )
    return Evidence(state=state, profile=PROFILE, now=NOW, kube=kube or KubeFacts())


def cluster(version: str, *nodes: KubeNode) -> KubeFacts:
    return KubeFacts(server_version=version, nodes=nodes, error=None, fetched_at=NOW)


def ts(seconds: float) -> Timestamp:
    t = Timestamp()
    t.FromNanoseconds(int(seconds * 1e9))
    return t


def egress_up(target: str, proxy: bool = False, not_after: float | None = None) -> pb.EgressResult:
    phases: list[pb.Phase.ValueType] = [pb.PHASE_RESOLVE, pb.PHASE_CONNECT]
    if proxy:
        phases.append(pb.PHASE_PROXY_CONNECT)
    phases += [pb.PHASE_TLS, pb.PHASE_REQUEST, pb.PHASE_TRANSFER]
    e = pb.EgressResult(
        target=target,
        outcome=pb.OUTCOME_UP,
        proxy_used=proxy,
        started_at=ts(T0 - 5),
        phases=[
            pb.PhaseTiming(phase=p, duration_seconds=0.001 * (i + 1)) for i, p in enumerate(phases)
        ],
    )
    if not_after is not None:
        e.certificate.CopyFrom(pb.Certificate(issuer="CN=Test CA", not_after=ts(not_after)))
    return e


def egress_down(
    target: str,
    reason: pb.FailureReason.ValueType,
    phases: list[pb.Phase.ValueType],
    certificate: pb.Certificate | None = None,
) -> pb.EgressResult:
    e = pb.EgressResult(
        target=target,
        outcome=pb.OUTCOME_DOWN,
        reason=reason,
        failed_phase=phases[-1],
        message="free text that must never become a label",
        started_at=ts(T0 - 3),
        phases=[pb.PhaseTiming(phase=p, duration_seconds=0.25) for p in phases],
    )
    if certificate is not None:
        e.certificate.CopyFrom(certificate)
    return e


def mount(
    path: str, state: pb.MountState.ValueType, write: pb.WriteCheck.ValueType, peers: int
) -> pb.MountResult:
    m = pb.MountResult(path=path, state=state, write_check=write)
    m.marker.peers.extend(pb.PeerMarker(node_name=f"peer-{i}") for i in range(peers))
    return m


def hardware(cores: int, memory: int) -> pb.HardwareFacts:
    return pb.HardwareFacts(
        logical_cores=cores,
        memory_total_bytes=memory,
        kernel_release="6.1.0-18-amd64",
        os_release="Debian GNU/Linux 12 (bookworm)",
        architecture="x86_64",
    )
