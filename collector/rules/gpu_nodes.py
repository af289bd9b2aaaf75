"""gpu_nodes: at least one GPU node, and on each the PCI, driver and allocatable counts agree.

PCI sees the hardware with no driver, NVML sees what the driver drives, and
Kubernetes' allocatable `nvidia.com/gpu` is what the device plugin offers: a
disagreement points at a broken driver, a lost GPU or a missing device plugin.
"""

from __future__ import annotations

from collector.rules.model import ClusterView, Verdict, count, names

REQUIREMENT = "gpu_nodes"


def evaluate(view: ClusterView) -> Verdict:
    counts: dict[str, dict[str, int]] = {}
    for entry in view.live_nodes:
        if entry.report.HasField("gpus"):
            gpus = entry.report.gpus
            counts[entry.name] = {"pci": gpus.pci_count, "driver": gpus.driver_count}
    if view.kube.available:
        for node in view.kube.nodes:
            counts.setdefault(node.name, {})["allocatable"] = node.allocatable_gpus
    if not counts:
        return Verdict(REQUIREMENT, "unknown", "no agent report and no Kubernetes API")
    gpu_nodes = sorted(name for name, c in counts.items() if any(c.values()))
    if not gpu_nodes:
        return Verdict(REQUIREMENT, "fail", f"no GPU on any node ({count(len(counts), 'node')})")
    disagree = []
    for name in gpu_nodes:
        c = counts[name]
        if len(set(c.values())) > 1:
            disagree.append(f"{name}: " + " / ".join(f"{v} {k}" for k, v in c.items()))
    if disagree:
        return Verdict(
            REQUIREMENT,
            "warn",
            f"GPU counts disagree on {count(len(disagree), 'node')}: {names(disagree, 3)}",
            nodes=tuple(d.split(":")[0] for d in disagree),
        )
    total = sum(max(counts[n].values()) for n in gpu_nodes)
    allocatable = "" if view.kube.available else " (allocatable unknown: no Kubernetes API)"
    return Verdict(
        REQUIREMENT,
        "pass",
        f"{count(len(gpu_nodes), 'GPU node')}, {count(total, 'GPU')}, counts agree{allocatable}",
        nodes=tuple(gpu_nodes),
    )
