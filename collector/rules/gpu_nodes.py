"""gpu_nodes: ≥ 1 GPU node, on each the PCI, kernel driver and allocatable counts agree,
and nodes of one GPU model run one driver version.

PCI sees the hardware with no driver, the kernel driver's view (sysfs binding and
/proc/driver/nvidia, read by an unprivileged agent) what the nvidia module drives, and
Kubernetes' allocatable `nvidia.com/gpu` what the device plugin offers: a disagreement
points at a missing module, a lost GPU or a missing device plugin. NVML is detail: its
count joins the comparison only where it answered, and its absence alone (an agent pod
without the NVIDIA runtime) never makes a node warn. GPUs bound to vfio-pci are
passthrough (handed to virtual machines), named as such and left out of the comparison.
Agents that send no kernel view (older releases) are judged by NVML's count, as before.
Nodes of one model on different drivers (a rolling upgrade left half done) warn: the
minority, or on a tie every side (collector.capacity.driver_spread, which the capacity
view shows too).

The verdict reads the live nodes' derived facts and the Kubernetes nodes only: while
those are the same (heartbeats), the last verdict is given again (collector.rules.memo).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from collector.capacity import driver_spread, models_and_driver
from collector.kube.facts import KubeNode
from collector.rules.memo import LastVerdict, PerReport
from collector.rules.model import Evidence, Verdict, count, names
from preflight.v1 import report_pb2 as pb

REQUIREMENT = "gpu_nodes"


@dataclass
class _Node:
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # make the node warn
    notes: list[str] = field(default_factory=list)  # said, never warn
    mismatch: bool = False
    models: tuple[tuple[str, int], ...] = ()  # model × GPUs (collector.capacity)
    driver: str = ""

    @property
    def disagree(self) -> bool:
        return len(set(self.counts.values())) > 1

    @property
    def has_gpus(self) -> bool:
        return any(self.counts.values())


def _from_report(gpus: pb.GpuFacts) -> _Node:
    models, driver, _source = models_and_driver(gpus)
    node = _Node(models=models, driver=driver)
    if gpus.kernel_module == pb.KERNEL_MODULE_UNSPECIFIED:
        # An agent without the kernel view: NVML's count is all there is.
        node.counts = {"pci": gpus.pci_count, "driver": gpus.driver_count}
        return node
    passthrough = gpus.passthrough_count
    # A report claiming more passthrough than PCI GPUs is clamped, not negative.
    node.counts = {"pci": max(0, gpus.pci_count - passthrough), "kernel": gpus.kernel_driver_count}
    if passthrough:
        node.notes.append(f"{passthrough} passthrough (vfio-pci)")
    if gpus.pci_count and gpus.kernel_module == pb.KERNEL_MODULE_NOT_LOADED:
        node.problems.append("nvidia module not loaded")
    # Bound elsewhere than nvidia or vfio-pci: nouveau, or nothing at all.
    others = Counter(d.kernel_driver or "bound to no driver" for d in gpus.pci_devices)
    for driver in sorted(set(others) - {"nvidia", "vfio-pci"}):
        node.problems.append(f"{others[driver]} {driver}")
    excluded = sum(1 for g in gpus.kernel_gpus if g.excluded)
    if excluded:
        node.problems.append(f"{excluded} excluded by the driver")
    status = gpus.driver_status
    if status == pb.DRIVER_STATUS_LOADED:
        node.counts["nvml"] = gpus.driver_count
    elif status == pb.DRIVER_STATUS_VERSION_MISMATCH:
        node.mismatch = True
        node.problems.append("NVML driver/library version mismatch")
    elif status == pb.DRIVER_STATUS_UNREACHABLE:
        node.notes.append("NVML not reachable from the agent")
    return node


def _derive(report: pb.NodeReport) -> _Node | None:
    return _from_report(report.gpus) if report.HasField("gpus") else None


# Cached per report and never mutated: the Kubernetes count goes into a new _Node.
_NODES = PerReport(_derive)
# The verdict reads the live nodes' derived facts and the Kubernetes nodes, nothing else.
_LAST = LastVerdict()


def _describe(name: str, node: _Node) -> str:
    counts = " / ".join(f"{v} {k}" for k, v in node.counts.items())
    problems = f" ({', '.join(node.problems)})" if node.problems else ""
    return f"{name}: {counts}{problems}"


def evaluate(view: Evidence) -> Verdict:
    names, derived = _NODES.named(view.live_nodes)
    available, kube_nodes = view.kube.available, view.kube.nodes
    return _LAST(
        (names, derived, available, kube_nodes),
        lambda: _judge(names, derived, available, kube_nodes),
    )


def _judge(
    live: list[str], derived: list[_Node | None], available: bool, kube_nodes: tuple[KubeNode, ...]
) -> Verdict:
    nodes: dict[str, _Node] = {}
    for name, facts in zip(live, derived, strict=True):
        if facts is not None:
            nodes[name] = facts
    if available:
        for kube_node in kube_nodes:
            seen = nodes.get(kube_node.name) or _Node()
            counts = {**seen.counts, "allocatable": kube_node.allocatable_gpus}
            nodes[kube_node.name] = _Node(
                counts, seen.problems, seen.notes, seen.mismatch, seen.models, seen.driver
            )
    if not nodes:
        return Verdict(REQUIREMENT, "unknown", "no agent report and no Kubernetes API")
    gpu_nodes = sorted(name for name, n in nodes.items() if n.has_gpus)
    spread = driver_spread((name, nodes[name].models, nodes[name].driver) for name in gpu_nodes)
    notes = tuple(
        (name, "; ".join(n.problems + ([spread[name]] if name in spread else []) + n.notes))
        for name, n in sorted(nodes.items())
        if n.problems or n.notes or name in spread
    )
    if not gpu_nodes:
        return Verdict(
            REQUIREMENT,
            "fail",
            f"no GPU on any node ({count(len(nodes), 'node')})" + _passthrough(nodes),
            node_notes=notes,
        )
    disagree = [name for name in gpu_nodes if nodes[name].disagree]
    mismatch = [name for name in gpu_nodes if nodes[name].mismatch and name not in disagree]
    drivers = sorted(spread)
    if disagree or mismatch or drivers:
        parts = []
        if disagree:
            described = [_describe(name, nodes[name]) for name in disagree]
            parts.append(
                f"GPU counts disagree on {count(len(disagree), 'node')}: {names(described, 3)}"
            )
        if mismatch:
            parts.append(
                "NVML driver/library version mismatch (reload the module or reboot after the "
                f"driver upgrade) on {count(len(mismatch), 'node')}: {names(mismatch, 3)}"
            )
        if drivers:
            # Each sentence names its model and the versions: one per model suffices.
            sentences = sorted(set(spread.values()))
            parts.append(
                f"{'; '.join(sentences)}: {names(drivers, 3)} (a rolling driver upgrade "
                "not finished: jobs behave differently per node)"
            )
        return Verdict(
            REQUIREMENT,
            "warn",
            "; ".join(parts),
            nodes=tuple(sorted(set(disagree + mismatch + drivers))),
            node_notes=notes,
        )
    total = sum(max(nodes[n].counts.values()) for n in gpu_nodes)
    allocatable = "" if available else " (allocatable unknown: no Kubernetes API)"
    unreachable = [n for n in gpu_nodes if "NVML not reachable from the agent" in nodes[n].notes]
    nvml = (
        f"; NVML not reachable from the agent on {count(len(unreachable), 'node')}, "
        "counted by the kernel driver"
        if unreachable
        else ""
    )
    return Verdict(
        REQUIREMENT,
        "pass",
        f"{count(len(gpu_nodes), 'GPU node')}, {count(total, 'GPU')}, counts agree"
        f"{allocatable}{nvml}{_passthrough(nodes)}",
        nodes=tuple(gpu_nodes),
        node_notes=notes,
    )


def _passthrough(nodes: dict[str, _Node]) -> str:
    passthrough = [
        f"{name} {note.split(' ', 1)[0]}"
        for name, n in sorted(nodes.items())
        for note in n.notes
        if note.endswith("passthrough (vfio-pci)")
    ]
    return f"; passthrough (vfio-pci) GPUs: {names(passthrough, 3)}" if passthrough else ""
