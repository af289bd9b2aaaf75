"""Prometheus exposition: text rendered from one immutable Published, cached per node.

Every series is derived in one place (`node_samples`, `cluster_samples`) and written
two ways that must agree byte for byte (a test checks it):

- `SnapshotCollector`, a prometheus_client custom collector over the view, for anyone
  who wants the series in a registry;
- `Exposition.render`, what /metrics serves: it writes the text itself and keeps each
  node's lines (as bytes, one chunk per metric family) until that node's entry changes.
  NodeEntry reports are immutable and replaced on every accepted report, so the cache
  key is the report object itself (plus receipt time, staleness and the node's
  allocatable GPUs, which live outside the report). A scrape then costs a join over
  cached chunks plus the few cluster-wide families, instead of formatting every series
  again while holding the GIL (which the gRPC event loop needs too).

Families keep prometheus_client's order and layout: HELP and TYPE once per family,
every family contiguous, labels sorted by name, values formatted like Go.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from collector.kube.platform_facts import PlatformFacts
from collector.published import Published
from collector.rules.model import STATUSES
from collector.state import NodeEntry
from preflight.enums import MOUNT_STATES, PHASES, REASONS, WRITE_CHECKS
from preflight.v1 import report_pb2 as pb

ISSUER_LABEL_MAX = 64
# ClusterPolicy status.state values (NVIDIA/gpu-operator api/nvidia/v1 State); any other
# value is "other", none yet "unreconciled", no ClusterPolicy at all "absent".
_POLICY_STATES = frozenset({"ready", "notReady", "ignored", "disabled"})
_VERSION_SOURCES = frozenset(
    {
        "app.kubernetes.io/version",
        "helm.sh/chart",
        "image tag",
        "clusterpolicy app.kubernetes.io/version",
    }
)
# A version label, not free text: v25.10.0, 25.10.0-rc.1, 23.9.2+build (at most 40 chars).
VERSION_LABEL_MAX = 40
_VERSION_LABEL = re.compile(r"^(v?\d+(\.\d+){0,3}([-+][0-9A-Za-z.-]{1,24})?)?$")


# eq=False: a family is its own identity (fast dict keys, one object per family).
@dataclass(frozen=True, eq=False)
class Family:
    """One metric family as exposed; `name` is the sample name (with `_total`)."""

    name: str
    type: str  # "gauge" or "counter"
    help: str
    labels: tuple[str, ...]
    per_node: bool

    @cached_property
    def header(self) -> bytes:
        doc = self.help.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {self.name} {doc}\n# TYPE {self.name} {self.type}\n".encode()

    @cached_property
    def sorted_labels(self) -> tuple[tuple[str, int], ...]:
        """Label names in sorted order with their position: prometheus_client sorts them."""
        return tuple(sorted((label, position) for position, label in enumerate(self.labels)))


def _g(name: str, doc: str, labels: Iterable[str], per_node: bool) -> Family:
    return Family(name, "gauge", doc, tuple(labels), per_node)


_NT = ("node", "target")
_NP = ("node", "path")

# Every family, each a named constant: samples name their family, never a position.
REQUIREMENT_STATUS = _g(
    "preflight_requirement_status",
    "1 for the current status of each requirement (one-hot over pass/warn/fail/unknown).",
    ("requirement", "status"),
    False,
)
CLUSTER_READY = _g(
    "preflight_cluster_ready",
    "1 when every requirement of the phase passes or warns.",
    ("phase",),
    False,
)
KUBERNETES_NODE_INFO = _g(
    "preflight_kubernetes_node_info",
    "One series per Kubernetes node, from the Kubernetes API.",
    ("node", "control_plane"),
    False,
)
REPORTS_RECEIVED = Family(
    "preflight_reports_received_total",
    "counter",
    "Reports accepted since the collector started.",
    (),
    False,
)
REPORTS_REJECTED = Family(
    "preflight_reports_rejected_total",
    "counter",
    "Reports rejected, by reason.",
    ("reason",),
    False,
)
AGENT_UP = _g("preflight_agent_up", "1 while the node's agent reports in time.", ("node",), True)
AGENT_LAST_REPORT = _g(
    "preflight_agent_last_report_timestamp_seconds",
    "When the collector last accepted a report from the node.",
    ("node",),
    True,
)
AGENT_CLOCK_SKEW = _g(
    "preflight_agent_clock_skew_seconds",
    "Agent clock minus collector clock at the last report (includes network delay).",
    ("node",),
    True,
)
AGENT_PLAN_OUTDATED = _g(
    "preflight_agent_plan_outdated",
    "1 while the node's agent probes another plan than the collector's profile gives it.",
    ("node",),
    True,
)
EGRESS_UP = _g("preflight_egress_up", "1 when the node reaches the target.", _NT, True)
EGRESS_FAILURE = _g(
    "preflight_egress_failure",
    "1 for the current failure reason of an unreachable target.",
    (*_NT, "reason"),
    True,
)
EGRESS_PHASE = _g(
    "preflight_egress_phase_duration_seconds",
    "Duration of each phase reached in the last probe.",
    (*_NT, "phase"),
    True,
)
EGRESS_LAST_SUCCESS = _g(
    "preflight_egress_last_success_timestamp_seconds",
    "Start of the last probe that reached the target.",
    _NT,
    True,
)
EGRESS_PROXY_USED = _g(
    "preflight_egress_proxy_used", "1 when the probe went through a proxy.", _NT, True
)
EGRESS_UNTRUSTED = _g(
    "preflight_egress_tls_untrusted_certificate_info",
    "The certificate presented when TLS did not verify (e.g. an inspecting proxy).",
    (*_NT, "issuer", "fingerprint_sha256"),
    True,
)
EGRESS_NOT_AFTER = _g(
    "preflight_egress_tls_cert_not_after_timestamp_seconds",
    "Earliest certificate expiry seen for the target across nodes.",
    ("target",),
    False,
)
EGRESS_MIRROR = _g(
    "preflight_egress_target_mirror_info",
    "1 for each profile target probed at a mirror (collector setting mirrors).",
    ("target", "origin", "mirror"),
    False,
)
NODE_CPU = _g("preflight_node_cpu_cores", "Logical CPU cores.", ("node",), True)
NODE_MEMORY = _g("preflight_node_memory_bytes", "Total memory.", ("node",), True)
NODE_GPUS = _g("preflight_node_gpus", "GPUs by source.", ("node", "source"), True)
NODE_INFO = _g(
    "preflight_node_info",
    "Node facts as labels.",
    ("node", "kernel", "os", "arch", "agent_version"),
    True,
)
NODE_CLOCK_SYNCHRONISED = _g(
    "preflight_node_clock_synchronised",
    "1 when the node's kernel reports its clock NTP-synchronised (adjtimex).",
    ("node",),
    True,
)
NODE_CLOCK_ESTIMATED_ERROR = _g(
    "preflight_node_clock_estimated_error_seconds",
    "The kernel's estimated clock error (adjtimex esterror).",
    ("node",),
    True,
)
NODE_CLOCK_MAX_ERROR = _g(
    "preflight_node_clock_max_error_seconds",
    "The kernel's maximum clock error (adjtimex maxerror).",
    ("node",),
    True,
)
GPU_OPERATOR_INFO = _g(
    "preflight_gpu_operator_info",
    "The NVIDIA GPU Operator found: its version and ClusterPolicy state.",
    ("version", "version_source", "state"),
    False,
)
MOUNT_UP = _g("preflight_mount_up", "1 when a filesystem is mounted at the path.", _NP, True)
MOUNT_WRITABLE = _g("preflight_mount_writable", "1 when the write round-trip succeeded.", _NP, True)
MOUNT_STUCK = _g("preflight_mount_stuck", "1 while a call on the path is blocked.", _NP, True)
MOUNT_PEERS = _g("preflight_mount_peers_visible", "Peer markers visible on the path.", _NP, True)
NODE_UNUSABLE = _g(
    "preflight_node_report_unusable",
    "1 for a node whose report could not be judged or rendered (its other series are "
    "left out; the reason is on the status page).",
    ("node",),
    True,
)
NODE_DATA_ERRORS = Family(
    "preflight_node_data_errors_total",
    "counter",
    "Times one node's data raised in a surface (rules, metrics, json, status_page); "
    "the other nodes were still rendered.",
    ("surface",),
    False,
)
JUDGING_ERRORS = Family(
    "preflight_judging_errors_total",
    "counter",
    "Judging passes that raised; the supervised loop went on.",
    (),
    False,
)
VERDICTS_TIMESTAMP = _g(
    "preflight_verdicts_timestamp_seconds",
    "When judging last completed: the time the served verdicts are current as of.",
    (),
    False,
)
# Capacity (issue 14): per GPU and per filesystem role; labels stay bounded (GPU
# indexes, the agent's fixed list of filesystem roles and paths).
GPU_INFO = _g(
    "preflight_gpu_info",
    "One series per GPU NVML lists: model, driver and CUDA version, MIG mode as labels.",
    ("node", "index", "model", "driver_version", "cuda_version", "mig_mode"),
    True,
)
GPU_MEMORY = _g("preflight_gpu_memory_bytes", "GPU memory (NVML's total).", ("node", "index"), True)
GPU_MIG_INSTANCES = _g(
    "preflight_gpu_mig_instances",
    "MIG instances on the GPU (0 with MIG mode disabled).",
    ("node", "index"),
    True,
)
FS_CAPACITY = _g(
    "preflight_node_filesystem_capacity_bytes",
    "Size of the filesystem holding a well-known directory (root, kubelet, runtime).",
    ("node", "role", "path"),
    True,
)
FS_FREE = _g(
    "preflight_node_filesystem_free_bytes",
    "Space non-root writers (kubelet, container images) can still use there.",
    ("node", "role", "path"),
    True,
)
# GPU model names are short ("NVIDIA A100-SXM4-80GB"); a cap keeps a hostile one bounded.
MODEL_LABEL_MAX = 64

# Exposition order. Cluster-wide families are rendered fresh on every scrape; per-node
# families come from the node cache.
FAMILIES: tuple[Family, ...] = (
    REQUIREMENT_STATUS,
    CLUSTER_READY,
    KUBERNETES_NODE_INFO,
    REPORTS_RECEIVED,
    REPORTS_REJECTED,
    AGENT_UP,
    AGENT_LAST_REPORT,
    AGENT_CLOCK_SKEW,
    AGENT_PLAN_OUTDATED,
    EGRESS_UP,
    EGRESS_FAILURE,
    EGRESS_PHASE,
    EGRESS_LAST_SUCCESS,
    EGRESS_PROXY_USED,
    EGRESS_UNTRUSTED,
    EGRESS_NOT_AFTER,
    EGRESS_MIRROR,
    NODE_CPU,
    NODE_MEMORY,
    NODE_GPUS,
    NODE_INFO,
    NODE_CLOCK_SYNCHRONISED,
    NODE_CLOCK_ESTIMATED_ERROR,
    NODE_CLOCK_MAX_ERROR,
    GPU_OPERATOR_INFO,
    MOUNT_UP,
    MOUNT_WRITABLE,
    MOUNT_STUCK,
    MOUNT_PEERS,
    NODE_UNUSABLE,
    NODE_DATA_ERRORS,
    JUDGING_ERRORS,
    VERDICTS_TIMESTAMP,
    GPU_INFO,
    GPU_MEMORY,
    GPU_MIG_INSTANCES,
    FS_CAPACITY,
    FS_FREE,
)
_NODE_FAMILIES = tuple(f for f in FAMILIES if f.per_node)
# Position of each per-node family within a node's cached chunks.
_NODE_SLOT = {f: slot for slot, f in enumerate(_NODE_FAMILIES)}

# (family, label values in the family's label order, value)
Sample = tuple[Family, tuple[str, ...], float]


def issuer_cn(issuer: str) -> str:
    """The issuer's common name from an RFC 4514 string, truncated for use as a label.

    Falls back to the whole string when there is no CN (a CA named by O/OU only).
    """
    attributes: list[str] = []
    current: list[str] = []
    chars = iter(issuer)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char in ",+":
            attributes.append("".join(current))
            current = []
        else:
            current.append(char)
    attributes.append("".join(current))
    for attribute in attributes:
        key, sep, value = attribute.partition("=")
        if sep and key.strip().upper() == "CN":
            return value.strip()[:ISSUER_LABEL_MAX]
    return issuer[:ISSUER_LABEL_MAX]


def unusable_samples(node: NodeEntry) -> list[Sample]:
    """What is still said of a node whose data cannot be used: it reports, and that's all."""
    return [
        (AGENT_UP, (node.name,), 1.0 if node.up else 0.0),
        (AGENT_LAST_REPORT, (node.name,), node.received_at),
        (NODE_UNUSABLE, (node.name,), 1.0),
    ]


def node_samples(
    node: NodeEntry, allocatable_gpus: int | None, expected_plan: str | None = None
) -> Iterator[Sample]:
    """Every per-node series of `node`, in exposition order within each family.

    `expected_plan` is the plan version the collector gives the node (None: not known).
    """
    name = node.name
    report = node.report
    yield AGENT_UP, (name,), 1.0 if node.up else 0.0
    yield AGENT_LAST_REPORT, (name,), node.received_at
    yield AGENT_CLOCK_SKEW, (name,), node.clock_skew_seconds
    if expected_plan is not None:
        outdated = report.plan_version != expected_plan
        yield AGENT_PLAN_OUTDATED, (name,), 1.0 if outdated else 0.0
    for e in report.egress:
        key = (name, e.target)
        is_up = e.outcome == pb.OUTCOME_UP
        yield EGRESS_UP, key, 1.0 if is_up else 0.0
        yield EGRESS_PROXY_USED, key, 1.0 if e.proxy_used else 0.0
        if not is_up and e.reason:
            yield EGRESS_FAILURE, (*key, REASONS.name(e.reason)), 1.0
        for timing in e.phases:
            yield EGRESS_PHASE, (*key, PHASES.name(timing.phase)), timing.duration_seconds
        if e.reason == pb.REASON_TLS_UNTRUSTED and e.HasField("certificate"):
            cert = e.certificate
            yield EGRESS_UNTRUSTED, (*key, issuer_cn(cert.issuer), cert.sha256_fingerprint), 1.0
    for target, seconds in node.last_success:
        yield EGRESS_LAST_SUCCESS, (name, target), seconds
    if report.HasField("hardware"):
        yield NODE_CPU, (name,), float(report.hardware.logical_cores)
        yield NODE_MEMORY, (name,), float(report.hardware.memory_total_bytes)
    if report.HasField("gpus"):
        gpus = report.gpus
        yield NODE_GPUS, (name, "pci"), float(gpus.pci_count)
        kernel_view = gpus.kernel_module != pb.KERNEL_MODULE_UNSPECIFIED
        if kernel_view:
            yield NODE_GPUS, (name, "kernel"), float(gpus.kernel_driver_count)
        # NVML's count only where it answered: an agent that cannot reach NVML has not
        # seen "0 GPUs". Agents without the kernel view keep the old series.
        if not kernel_view or gpus.driver_status == pb.DRIVER_STATUS_LOADED:
            yield NODE_GPUS, (name, "driver"), float(gpus.driver_count)
    if allocatable_gpus is not None:
        yield NODE_GPUS, (name, "allocatable"), float(allocatable_gpus)
    hw = report.hardware
    yield (
        NODE_INFO,
        (name, hw.kernel_release, hw.os_release, hw.architecture, report.agent_version),
        1.0,
    )
    if report.HasField("clock") and report.clock.available:
        clock = report.clock
        yield NODE_CLOCK_SYNCHRONISED, (name,), 1.0 if clock.synchronised else 0.0
        yield NODE_CLOCK_ESTIMATED_ERROR, (name,), clock.estimated_error_seconds
        yield NODE_CLOCK_MAX_ERROR, (name,), clock.maximum_error_seconds
    for m in report.mounts:
        key = (name, m.path)
        state = MOUNT_STATES.name(m.state)
        yield MOUNT_UP, key, 1.0 if state == "mounted" else 0.0
        yield MOUNT_WRITABLE, key, 1.0 if WRITE_CHECKS.name(m.write_check) == "ok" else 0.0
        yield MOUNT_STUCK, key, 1.0 if state == "stuck" else 0.0
        yield MOUNT_PEERS, key, float(len(m.marker.peers))
    yield from _capacity_samples(name, report)


def _capacity_samples(name: str, report: pb.NodeReport) -> Iterator[Sample]:
    gpus = report.gpus
    for d in gpus.devices:
        index = str(d.index)
        mig = "enabled" if d.mig_enabled else "disabled"
        model = d.name[:MODEL_LABEL_MAX]
        yield GPU_INFO, (name, index, model, gpus.driver_version, gpus.cuda_version, mig), 1.0
        yield GPU_MEMORY, (name, index), float(d.memory_total_bytes)
        yield GPU_MIG_INSTANCES, (name, index), float(len(d.mig_devices))
    seen: set[tuple[str, str]] = set()
    for fs in report.hardware.filesystems:
        key = (fs.role[:32], fs.path[:64])
        if key in seen:  # a duplicated entry must not make a duplicated series
            continue
        seen.add(key)
        yield FS_CAPACITY, (name, *key), float(fs.capacity_bytes)
        yield FS_FREE, (name, *key), float(fs.free_bytes)


def gpu_operator_labels(platform: PlatformFacts | None) -> tuple[str, str, str] | None:
    """(version, version_source, state) of the GPU Operator; None when none is installed.

    Both values come from the cluster, not from us: the version is kept only when it looks
    like one, the state is folded into ClusterPolicy's closed set, so one series at most.
    """
    if platform is None:
        return None
    policies = platform.cluster_policies if platform.cluster_policy.ok else ()
    deployment = platform.operator_deployment if platform.operator.ok else None
    if not policies and deployment is None:
        return None
    version, source = "", ""
    if deployment is not None and deployment.version:
        version, source = deployment.version, deployment.version_source
    elif policies and policies[0].version:
        version, source = policies[0].version, "clusterpolicy app.kubernetes.io/version"
    if len(version) > VERSION_LABEL_MAX or not _VERSION_LABEL.match(version):
        version, source = "", ""
    source = source if source in _VERSION_SOURCES else ""
    if not policies:
        state = "absent"
    else:
        raw = policies[0].state
        state = raw if raw in _POLICY_STATES else ("unreconciled" if not raw else "other")
    return version, source, state


def node_cert_expiries(node: NodeEntry) -> dict[str, float]:
    """Target → earliest leaf certificate notAfter this node saw (Unix seconds)."""
    earliest: dict[str, float] = {}
    for e in node.report.egress:
        if e.HasField("certificate") and e.certificate.HasField("not_after"):
            expiry = e.certificate.not_after.ToNanoseconds() / 1e9
            earliest[e.target] = min(expiry, earliest.get(e.target, expiry))
    return earliest


def cluster_samples(view: Published, expiries: Iterable[dict[str, float]]) -> Iterator[Sample]:
    """The cluster-wide series; `expiries` are node_cert_expiries of every node."""
    for verdict in view.verdicts:
        for s in STATUSES:
            yield REQUIREMENT_STATUS, (verdict.requirement, s), 1.0 if verdict.status == s else 0.0
    for phase, ok in view.ready:
        yield CLUSTER_READY, (phase,), 1.0 if ok else 0.0
    for name, control_plane in view.kubernetes_nodes:
        yield KUBERNETES_NODE_INFO, (name, "true" if control_plane else "false"), 1.0
    yield REPORTS_RECEIVED, (), float(view.state.reports_received)
    # Every reason from the start, at 0: increase() then sees a reason's first rejection.
    for reason, count in view.state.rejected:
        yield REPORTS_REJECTED, (reason,), float(count)
    earliest: dict[str, float] = {}
    for per_node in expiries:
        for target, expiry in per_node.items():
            earliest[target] = min(expiry, earliest.get(target, expiry))
    for target, expiry in sorted(earliest.items()):
        yield EGRESS_NOT_AFTER, (target,), expiry
    for m in view.mirrors:
        yield EGRESS_MIRROR, (m.target, m.origin, m.address), 1.0
    operator = gpu_operator_labels(view.kube.platform) if view.kube.available else None
    if operator is not None:
        yield GPU_OPERATOR_INFO, operator, 1.0
    for surface, count in view.faults.counts():
        yield NODE_DATA_ERRORS, (surface,), float(count)
    yield JUDGING_ERRORS, (), float(view.judging_errors)
    yield VERDICTS_TIMESTAMP, (), view.judged_at


def guarded_node_samples(
    view: Published, node: NodeEntry, allocatable_gpus: int | None
) -> tuple[list[Sample], dict[str, float]]:
    """(samples, certificate expiries) of one node, or its unusable samples when that raises."""
    if node.name in view.unusable_names:
        return unusable_samples(node), {}
    plan = view.plans.version_for(node.name)
    return view.faults.guard(
        "metrics",
        node.name,
        lambda: (list(node_samples(node, allocatable_gpus, plan)), node_cert_expiries(node)),
        lambda _reason: (unusable_samples(node), {}),
    )


# ---------------------------------------------------------------- text writer


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


# prometheus_client's own float formatting (Go style), typed for mypy.
_go_float: Callable[[float], str] = floatToGoString


def _value(v: float) -> str:
    return "1.0" if v == 1.0 else _go_float(v)


def _line(family: Family, values: tuple[str, ...], value: float) -> str:
    name = family.name
    if not values:
        return f"{name} {_value(value)}\n"
    labels = ",".join(f'{k}="{_escape(values[i])}"' for k, i in family.sorted_labels)
    return f"{name}{{{labels}}} {_value(value)}\n"


@dataclass(frozen=True)
class _NodeText:
    """One node's rendered lines and what they were rendered from."""

    report: pb.NodeReport
    received_at: float
    up: bool
    allocatable_gpus: int | None
    expected_plan: str | None
    chunks: tuple[bytes, ...]  # one per per-node family, in _NODE_SLOT order
    expiries: dict[str, float]
    marked: bool  # marked unusable by the rules

    def matches(
        self, node: NodeEntry, allocatable_gpus: int | None, plan: str | None, marked: bool
    ) -> bool:
        return (
            self.report is node.report
            and self.received_at == node.received_at
            and self.up == node.up
            and self.allocatable_gpus == allocatable_gpus
            and self.expected_plan == plan
            and self.marked == marked
        )


def _render_node(
    view: Published, node: NodeEntry, allocatable_gpus: int | None, plan: str | None
) -> _NodeText:
    def text(samples: list[Sample]) -> tuple[bytes, ...]:
        parts: list[list[str]] = [[] for _ in _NODE_FAMILIES]
        for family, values, value in samples:
            parts[_NODE_SLOT[family]].append(_line(family, values, value))
        return tuple("".join(p).encode() for p in parts)

    samples, expiries = guarded_node_samples(view, node, allocatable_gpus)
    # Formatting can raise too (it is where a bad value would show): same fallback.
    chunks = view.faults.guard(
        "metrics", node.name, lambda: text(samples), lambda _r: text(unusable_samples(node))
    )
    return _NodeText(
        report=node.report,
        received_at=node.received_at,
        up=node.up,
        allocatable_gpus=allocatable_gpus,
        expected_plan=plan,
        chunks=chunks,
        expiries=expiries,
        marked=node.name in view.unusable_names,
    )


class Exposition:
    """Renders /metrics, reusing each node's text until that node's entry changes.

    One instance per collector. Safe to call from several worker threads at once:
    the cache is replaced as a whole, never mutated in place, and it keeps only the
    nodes of the latest view, so nodes that left take their series and memory along.
    """

    def __init__(self) -> None:
        self._nodes: dict[str, _NodeText] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def render(self, view: Published) -> bytes:
        """The text exposition of `view`; CPU-bound, call it from a worker thread."""
        allocatable = dict(view.allocatable_gpus)
        previous = self._nodes
        current: dict[str, _NodeText] = {}
        hits = 0
        marked = view.unusable_names
        for node in view.state.nodes:
            gpus = allocatable.get(node.name)
            plan = view.plans.version_for(node.name)
            text = previous.get(node.name)
            if text is not None and text.matches(node, gpus, plan, node.name in marked):
                hits += 1
            else:
                text = _render_node(view, node, gpus, plan)
            current[node.name] = text
        with self._lock:
            self._nodes = current
            self.hits += hits
            self.misses += len(current) - hits
        texts = list(current.values())
        cluster: dict[Family, list[str]] = {f: [] for f in FAMILIES if not f.per_node}
        for family, values, value in cluster_samples(view, (t.expiries for t in texts)):
            cluster[family].append(_line(family, values, value))
        out: list[bytes] = []
        for fam in FAMILIES:
            out.append(fam.header)
            if fam.per_node:
                slot = _NODE_SLOT[fam]
                out.extend(t.chunks[slot] for t in texts)
            else:
                out.append("".join(cluster[fam]).encode())
        return b"".join(out)


_default = Exposition()


def render(view: Published) -> bytes:
    """The text exposition of `view`, through a process-wide node cache.

    Kept for callers that hold no Exposition of their own; a collector should own one
    (several collectors in one process would otherwise evict each other's nodes).
    """
    return _default.render(view)


# ---------------------------------------------------------------- prometheus_client


class SnapshotCollector(Collector):
    """The same series as a prometheus_client collector (e.g. to add to a registry)."""

    def __init__(self, data: Published) -> None:
        self.data = data

    def collect(self) -> Iterator[Metric]:
        allocatable = dict(self.data.allocatable_gpus)
        nodes = self.data.state.nodes
        families: dict[Family, GaugeMetricFamily | CounterMetricFamily] = {}
        for f in FAMILIES:
            if f.type == "counter":
                base = f.name.removesuffix("_total")
                families[f] = CounterMetricFamily(base, f.help, labels=list(f.labels))
            else:
                families[f] = GaugeMetricFamily(f.name, f.help, labels=list(f.labels))
        per_node = [guarded_node_samples(self.data, n, allocatable.get(n.name)) for n in nodes]
        samples: list[Iterable[Sample]] = [cluster_samples(self.data, [e for _, e in per_node])]
        samples.extend(s for s, _ in per_node)
        for source in samples:
            for family, values, value in source:
                families[family].add_metric(list(values), value)
        yield from families.values()


def render_with_client(data: Published) -> bytes:
    """SnapshotCollector through prometheus_client's generate_latest (the reference)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(data))
    return generate_latest(registry)
