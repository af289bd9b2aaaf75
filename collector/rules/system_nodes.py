"""system_nodes: enough nodes labelled for the Run:ai system services, each big enough.

Run:ai 2.9+ runs its own services on nodes labelled `node-role.kubernetes.io/runai-system`
(profile: the label, how many, and cores / memory / root disk each). Without any labelled
node Run:ai schedules its services anywhere: every node then counts as a system node, and
the verdict says so (warn). Sizes come from the node's agent where one reports (what the
machine has), else from the node's Kubernetes capacity; the root disk from the agent's root
filesystem, else from the kubelet's ephemeral-storage capacity.
"""

from __future__ import annotations

from collector.kube.facts import KubeNode
from collector.plan import labelled_nodes
from collector.rules.memo import LastVerdict
from collector.rules.model import Evidence, Verdict, count, names
from collector.rules.sizes import Size, live_sizes
from preflight.profile_sections import SystemNodesRule

REQUIREMENT = "system_nodes"
GB = 1e9


def _size(sizes: dict[str, Size], node: KubeNode) -> tuple[float, int, int]:
    """(cores, memory bytes, root-disk bytes; 0 = unknown) of a node."""
    size = sizes.get(node.name)
    if size is not None and size.hardware:
        disk = size.root_disk_bytes or node.capacity_ephemeral_storage_bytes
        return float(size.logical_cores), size.memory_bytes, disk
    return node.capacity_cpu, node.capacity_memory_bytes, node.capacity_ephemeral_storage_bytes


# Kept while the Kubernetes nodes, the agents' sizes and the profile's rule are the same.
_LAST = LastVerdict()


def evaluate(view: Evidence) -> Verdict:
    unknown = view.unknown_without_kubernetes(REQUIREMENT)
    if unknown:
        return unknown
    rule = view.profile.system_nodes
    if rule is None:
        return Verdict(REQUIREMENT, "unknown", "the profile sets no system-node sizes")
    sizes = live_sizes(view)
    return _LAST((view.kube.nodes, rule, sizes), lambda: _judge(view, rule, sizes))


def _judge(view: Evidence, rule: SystemNodesRule, sizes: dict[str, Size]) -> Verdict:
    # The same nodes the probe plan treats as system nodes (collector.plan, one source).
    labelled = labelled_nodes(view.kube, rule.label)
    candidates = labelled or list(view.kube.nodes)
    wanted = f"{rule.cpus} cores, {rule.memory_bytes / GB:g} GB" + (
        f", {rule.root_disk_bytes / GB:g} GB root disk" if rule.root_disk_bytes else ""
    )
    undersized: list[str] = []
    flagged: list[str] = []
    for node in candidates:
        cpus, memory, disk = _size(sizes, node)
        problems = []
        if cpus < rule.cpus:
            problems.append(f"{cpus:g} cores")
        if memory < rule.memory_bytes:
            problems.append(f"{memory / GB:.1f} GB")
        if rule.root_disk_bytes and 0 < disk < rule.root_disk_bytes:
            problems.append(f"{disk / GB:.0f} GB root disk")
        if problems:
            flagged.append(node.name)
            undersized.append(f"{node.name} ({', '.join(problems)})")
    if len(candidates) < rule.minimum:
        what = f"labelled {rule.label}" if labelled else "in the cluster"
        return Verdict(
            REQUIREMENT,
            "fail",
            f"{count(len(candidates), 'node')} {what}; "
            f"at least {rule.minimum} needed ({wanted} each)",
            nodes=tuple(n.name for n in candidates),
        )
    if not labelled:
        detail = f"; undersized: {names(undersized)}" if undersized else ""
        return Verdict(
            REQUIREMENT,
            "warn",
            f"no node labelled {rule.label}: every node counts as a system node{detail}",
            nodes=tuple(flagged),
        )
    if undersized:
        return Verdict(
            REQUIREMENT,
            "warn",
            f"{count(len(undersized), 'system node')} below {wanted}: {names(undersized)}",
            nodes=tuple(flagged),
        )
    if rule.recommended is not None and len(labelled) < rule.recommended:
        return Verdict(
            REQUIREMENT,
            "warn",
            f"{count(len(labelled), 'system node')}, each ≥ {wanted}; "
            f"{rule.recommended} are recommended",
            nodes=tuple(n.name for n in labelled),
        )
    return Verdict(
        REQUIREMENT,
        "pass",
        f"{count(len(labelled), 'system node')} (≥ {rule.minimum}), each ≥ {wanted}",
        nodes=tuple(n.name for n in labelled),
    )
