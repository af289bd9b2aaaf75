"""Status page test helpers: sample NodeReports (healthy, failing, hostile) and a small DOM.

Hostile strings are what an untrusted agent could send; each would change
`document.title` to a string starting with "pwned" if the page ever let it run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from html.parser import HTMLParser

from google.protobuf.timestamp_pb2 import Timestamp

from collector.kube.facts import STANDALONE, KubeFacts
from collector.published import Published
from collector.rules.model import Verdict
from collector.state import AgentReports, NodeEntry
from preflight.plan import plan_from_profile
from preflight.profile import load_profile
from preflight.v1 import report_pb2 as pb

# The plan a standalone collector with the default profile gives every node.
RUNAI_2020_PLAN = plan_from_profile(load_profile("runai-2020"), system=True).version

GIB = 1024**3

INSTALL_TARGETS = (
    "runai-charts.storage.googleapis.com",
    "hub.docker.com",
    "gcr.io/run-ai-prod",
    "quay.io",
)
RUNTIME_TARGETS = ("prometheus-us-central1.grafana.net", "app.run.ai")
TARGETS = INSTALL_TARGETS + RUNTIME_TARGETS

HOSTILE_NODE = "<img src=x onerror=alert(1)>"
HOSTILE_NODE_2 = "<img src=x onerror=\"document.title='pwned-node'\">"
HOSTILE_TARGET = "\"><script>document.title='pwned-target'</script>"
HOSTILE_MESSAGE = '"><img src=y onerror="document.title=\'pwned-message\'">'
HOSTILE_CPU = "<svg onload=\"document.title='pwned-cpu'\"></svg>Xeon"
HOSTILE_SOURCE = "</td><script>document.title='pwned-source'</script>"
HOSTILES = (
    HOSTILE_NODE,
    HOSTILE_NODE_2,
    HOSTILE_TARGET,
    HOSTILE_MESSAGE,
    HOSTILE_CPU,
    HOSTILE_SOURCE,
)


def up(target: str, ttfb: float = 0.042, total: float = 0.081) -> pb.EgressResult:
    return pb.EgressResult(
        target=target,
        url=f"https://{target}/",
        outcome=pb.OUTCOME_UP,
        http_status=200,
        time_to_first_byte_seconds=ttfb,
        total_seconds=total,
        phases=[
            pb.PhaseTiming(phase=pb.PHASE_RESOLVE, duration_seconds=0.004),
            pb.PhaseTiming(phase=pb.PHASE_CONNECT, duration_seconds=0.011),
            pb.PhaseTiming(phase=pb.PHASE_TLS, duration_seconds=0.025),
        ],
    )


def down(target: str, reason: int, phase: int, message: str) -> pb.EgressResult:
    return pb.EgressResult(
        target=target,
        url=f"https://{target}/",
        outcome=pb.OUTCOME_DOWN,
        reason=reason,  # type: ignore[arg-type]
        failed_phase=phase,  # type: ignore[arg-type]
        message=message,
        total_seconds=0.012,
    )


def nfs_mount(peers: tuple[str, ...], source: str = "nas:/export/runai") -> pb.MountResult:
    now = Timestamp(seconds=int(time.time()))
    return pb.MountResult(
        path="/mnt/runai",
        state=pb.MOUNT_STATE_MOUNTED,
        fs_type="nfs4",
        source=source,
        network_filesystem=True,
        write_check=pb.WRITE_CHECK_OK,
        write_latency_seconds=0.003,
        capacity_bytes=2 * 1024 * GIB,
        free_bytes=1024 * GIB,
        marker=pb.SharedMarker(
            nonce="n",
            written_at=now,
            # Read just now: fresh markers, as agents sharing one NAS report them.
            peers=[pb.PeerMarker(node_name=p, nonce="p", written_at=now) for p in peers],
            markers_seen=len(peers) + 1,
        ),
    )


def node_report(
    name: str,
    *,
    cores: int = 32,
    memory_gib: int = 256,
    pci: int = 0,
    driver: int = 0,
    egress: list[pb.EgressResult] | None = None,
    mounts: list[pb.MountResult] | None = None,
    cpu_model: str = "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz",
    sequence: int = 1,
) -> pb.NodeReport:
    report = pb.NodeReport(
        node_name=name,
        agent_version="0.1.0",
        instance_id=f"instance-{len(name)}",
        sequence=sequence,
        probe_interval_seconds=15,
        heartbeat_interval_seconds=30,
        plan_version=RUNAI_2020_PLAN,
        plan_source=pb.PLAN_SOURCE_COLLECTOR,
        hardware=pb.HardwareFacts(
            cpu_model=cpu_model,
            logical_cores=cores,
            physical_cores=cores // 2,
            memory_total_bytes=memory_gib * GIB,
            memory_available_bytes=memory_gib * GIB // 2,
            kernel_release="5.15.0-105-generic",
            os_release="Ubuntu 22.04.4 LTS",
            architecture="x86_64",
        ),
        gpus=pb.GpuFacts(
            pci_scanned=True,
            pci_count=pci,
            driver_status=pb.DRIVER_STATUS_LOADED if driver else pb.DRIVER_STATUS_NOT_INSTALLED,
            driver_count=driver,
            driver_version="535.161.08" if driver else "",
        ),
        egress=egress if egress is not None else [up(t) for t in TARGETS],
        mounts=mounts or [],
    )
    report.sent_at.GetCurrentTime()
    return report


def cluster_reports() -> list[pb.NodeReport]:
    """Four nodes: one healthy, two with egress failures, one hostile."""
    peers = ("gpu-node-1", "gpu-node-2", "cpu-node-3")
    return [
        node_report(
            "gpu-node-1",
            pci=8,
            driver=8,
            mounts=[nfs_mount(tuple(p for p in peers if p != "gpu-node-1"))],
        ),
        node_report(
            "gpu-node-2",
            pci=8,
            driver=7,
            egress=[
                down(
                    t,
                    pb.REASON_DNS_NXDOMAIN,
                    pb.PHASE_RESOLVE,
                    "getaddrinfo gcr.io: Name or service not known",
                )
                if t == "gcr.io/run-ai-prod"
                else up(t)
                for t in TARGETS
            ],
            mounts=[nfs_mount(("gpu-node-1",))],
        ),
        node_report(
            "cpu-node-3",
            cores=16,
            memory_gib=64,
            egress=[
                down(t, pb.REASON_CONNECT_REFUSED, pb.PHASE_CONNECT, "connection refused")
                if t == "app.run.ai"
                else up(t)
                for t in TARGETS
            ],
        ),
        node_report(
            HOSTILE_NODE,
            cores=4,
            memory_gib=16,
            cpu_model=HOSTILE_CPU,
            egress=[
                *(up(t) for t in TARGETS[:-1]),
                down(TARGETS[-1], pb.REASON_TLS_UNTRUSTED, pb.PHASE_TLS, HOSTILE_MESSAGE),
                down(HOSTILE_TARGET, pb.REASON_TIMEOUT, pb.PHASE_REQUEST, HOSTILE_MESSAGE),
            ],
            mounts=[nfs_mount((HOSTILE_NODE_2,), source=HOSTILE_SOURCE)],
        ),
        node_report(HOSTILE_NODE_2, cores=2, memory_gib=4),
    ]


VOID = {"meta", "br", "img", "input", "link", "hr", "wbr", "col", "source", "area", "base"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    def iter(self) -> list[Element]:
        found = [self]
        for c in self.children:
            if isinstance(c, Element):
                found += c.iter()
        return found

    def by_id(self, id_: str) -> Element:
        matches = [e for e in self.iter() if e.attrs.get("id") == id_]
        assert len(matches) == 1, f"{len(matches)} elements with id={id_}"
        return matches[0]

    def with_class(self, cls: str) -> list[Element]:
        return [e for e in self.iter() if cls in e.attrs.get("class", "").split()]


class TreeBuilder(HTMLParser):
    """A strict-enough DOM for assertions: what a browser would parse as elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(page: str) -> Element:
    builder = TreeBuilder()
    builder.feed(page)
    builder.close()
    return builder.root


NOW = 1_700_000_000.0


def entry(
    report: pb.NodeReport, *, age: float = 5.0, up_: bool = True, skew: float = 0.2
) -> NodeEntry:
    return NodeEntry.of(
        report,
        received_at=NOW - age,
        clock_skew_seconds=skew,
        first_seen=NOW - 3600,
        last_success=tuple((e.target, NOW - 600) for e in report.egress),
        up=up_,
    )


def view(
    entries: list[NodeEntry],
    verdicts: tuple[Verdict, ...] = (),
    ready: tuple[tuple[str, bool], ...] = (("install", False), ("runtime", True)),
    kube: KubeFacts | None = None,
) -> Published:
    state = AgentReports(
        taken_at=NOW,
        nodes=tuple(sorted(entries, key=lambda e: e.name)),
        stale_after_seconds=90,
        heartbeat_interval=30,
        reports_received=len(entries),
        rejected=(),
        version=1,
    )
    return Published(state=state, verdicts=verdicts, ready=ready, kube=kube or STANDALONE)
