"""control_plane_hardware (collector/rules/control_plane_hardware.py) as on main: reference.

A property test (tests/collector/test_rules_reference.py) checks that the collector's
fast paths give the same verdicts as this, reasons and evidence included, for random
reports and histories. Not used by the collector.

Original module docstring follows.

control_plane_hardware: the master best on its own machine with 4 CPUs and 8 GB (advice only).

Uses the agent's own facts where an agent runs on the control-plane node (what the
machine really has) and the node's Kubernetes capacity otherwise. Never fails.
"""

from __future__ import annotations

from collector.kube.facts import KubeNode
from collector.rules.model import Evidence, Verdict, count, names
from tests.support.sizes_reference import Size, live_sizes

REQUIREMENT = "control_plane_hardware"
GB = 1e9


def _resources(sizes: dict[str, Size], node: KubeNode) -> tuple[float, int, int, str]:
    """(cpus, memory bytes, gpus, source) for a control-plane node."""
    size = sizes.get(node.name)
    if size is not None and size.hardware:
        gpus = max(size.pci_gpus, size.driver_gpus, node.capacity_gpus)
        return size.logical_cores, size.memory_bytes, gpus, "agent"
    return node.capacity_cpu, node.capacity_memory_bytes, node.capacity_gpus, "kubernetes"


def evaluate(view: Evidence) -> Verdict:
    unknown = view.unknown_without_kubernetes(REQUIREMENT)
    if unknown:
        return unknown
    wanted = view.profile.control_plane
    if wanted is None:
        return Verdict(REQUIREMENT, "unknown", "the profile sets no control-plane size")
    control_planes = [n for n in view.kube.nodes if n.control_plane]
    if not control_planes:
        return Verdict(REQUIREMENT, "pass", "no control-plane node visible (managed control plane)")
    advice: list[str] = []
    flagged: list[str] = []
    sizes = live_sizes(view)
    for node in control_planes:
        cpus, memory, gpus, source = _resources(sizes, node)
        problems = []
        if cpus < wanted.cpus:
            problems.append(f"{cpus:g} CPUs < {wanted.cpus}")
        if memory < wanted.memory_bytes:
            problems.append(f"{memory / GB:.1f} GB < {wanted.memory_bytes / GB:g} GB")
        if wanted.dedicated and gpus > 0:
            problems.append(f"shares the machine with {gpus} GPUs")
        if wanted.dedicated and not any(t.endswith(":NoSchedule") for t in node.taints):
            problems.append("accepts workloads (no NoSchedule taint)")
        if problems:
            flagged.append(node.name)
            advice.append(f"{node.name} ({source}): {', '.join(problems)}")
    if flagged:
        return Verdict(
            REQUIREMENT,
            "warn",
            f"advice: control plane best dedicated with {wanted.cpus} CPUs and "
            f"{wanted.memory_bytes / GB:g} GB — {names(advice, 3)}",
            nodes=tuple(flagged),
        )
    return Verdict(
        REQUIREMENT,
        "pass",
        f"{count(len(control_planes), 'control-plane node')}, each ≥ {wanted.cpus} CPUs and "
        f"{wanted.memory_bytes / GB:g} GB, dedicated",
        nodes=tuple(n.name for n in control_planes),
    )
