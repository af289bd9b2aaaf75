"""gpu_operator: the NVIDIA GPU Operator is installed, ready, in the profile's version range,
and GPU Feature Discovery labels every GPU node.

Facts: the ClusterPolicy (`nvidia.com/v1`, its `status.state`), the operator Deployment's
version (labels `app.kubernetes.io/version` / `helm.sh/chart`, else its image tag: the
ClusterPolicy status carries no version), and the nodes' `nvidia.com/` labels.
No GPU Operator at all fails; everything else that is off is a warning, as Run:ai can
be installed and the operator fixed afterwards.
"""

from __future__ import annotations

from collector.kube.platform_facts import PlatformFacts
from collector.rules.memo import LastVerdict
from collector.rules.model import Evidence, Verdict, count, names
from collector.rules.sizes import live_sizes
from collector.rules.versions import at_least, at_most, dotted, matches_prefix

REQUIREMENT = "gpu_operator"


def _gpu_nodes(view: Evidence) -> list[str]:
    """Nodes with GPUs, by Kubernetes capacity or by the agent's PCI scan."""
    found = []
    sizes = live_sizes(view)
    for node in view.kube.nodes:
        size = sizes.get(node.name)
        pci = size.pci_gpus if size is not None else 0
        if node.capacity_gpus > 0 or pci > 0:
            found.append(node.name)
    return found


def _missing_labels(view: Evidence, wanted: tuple[str, ...], gpu_nodes: list[str]) -> list[str]:
    """`node (label, label)` for GPU nodes lacking a wanted GFD label."""
    nodes = {n.name: n for n in view.kube.nodes}
    out = []
    for name in gpu_nodes:
        present = {k for k, _ in nodes[name].nvidia_labels}
        missing = [w for w in wanted if not any(a in present for a in w.split("|"))]
        if missing:
            out.append(f"{name} ({names(missing, 3)})")
    return out


def _version(platform: PlatformFacts) -> tuple[str, str]:
    deployment = platform.operator_deployment
    if deployment is not None and deployment.version:
        return deployment.version, deployment.version_source
    for policy in platform.cluster_policies:
        if policy.version:
            return policy.version, "ClusterPolicy label app.kubernetes.io/version"
    return "", ""


# GPU nodes and their labels are looked at per Kubernetes node: the verdict is kept while
# the Kubernetes view (but its fetch time), the agents' sizes and the profile's rule are
# the same.
_LAST = LastVerdict()


def evaluate(view: Evidence) -> Verdict:
    kube = view.kube
    inputs = (kube.error, kube.platform, kube.nodes, view.profile.gpu_operator)
    # The sizes only where the verdict reads them (a profile with the rule, add-ons read).
    sizes = live_sizes(view) if kube.available and kube.platform is not None else None
    return _LAST((inputs, sizes), lambda: _evaluate(view))


def _evaluate(view: Evidence) -> Verdict:
    platform = view.platform_or_unknown(REQUIREMENT)
    if isinstance(platform, Verdict):
        return platform
    rule = view.profile.gpu_operator
    policy_read, operator_read = platform.cluster_policy, platform.operator
    if policy_read.state == "not_installed" and operator_read.state == "not_installed":
        return Verdict(
            REQUIREMENT,
            "fail",
            "no GPU Operator: no ClusterPolicy kind (nvidia.com/v1) and no gpu-operator Deployment",
        )
    unreadable = [
        read.describe(what)
        for read, what in (
            (policy_read, "ClusterPolicies"),
            (operator_read, "the gpu-operator Deployment"),
        )
        if read.state in ("forbidden", "error")
    ]
    if unreadable and not (policy_read.ok or operator_read.ok):
        return Verdict(REQUIREMENT, "unknown", "; ".join(unreadable))
    if policy_read.ok and not platform.cluster_policies and operator_read.state == "not_installed":
        return Verdict(REQUIREMENT, "fail", "no GPU Operator: no ClusterPolicy object exists")
    problems: list[str] = []
    facts: list[str] = []
    if policy_read.ok:
        if not platform.cluster_policies:
            problems.append("no ClusterPolicy object (the operator has nothing to deploy)")
        for policy in platform.cluster_policies:
            if policy.state == "ready":
                facts.append(f"ClusterPolicy {policy.name} ready")
            else:
                problems.append(
                    f"ClusterPolicy {policy.name} is {policy.state or 'not reconciled'}"
                )
    elif policy_read.state == "not_installed":
        problems.append("no ClusterPolicy kind (nvidia.com/v1): the operator is incomplete")
    else:
        problems.append(policy_read.describe("ClusterPolicies"))
    version, source = _version(platform)
    if rule is not None:
        span = rule.versions.minimum + (
            f"–{rule.versions.maximum}" if rule.versions.maximum else "+"
        )
        parsed = dotted(version) if version else None
        if parsed is None:
            why = (
                ""
                if operator_read.ok
                else f"; {operator_read.describe('the gpu-operator Deployment')}"
            )
            problems.append(f"GPU Operator version unknown (supported {span}){why}")
        else:
            minimum = dotted(rule.versions.minimum)
            maximum = dotted(rule.versions.maximum) if rule.versions.maximum else None
            assert minimum is not None, "profile versions are validated at load"
            excluded = [e for e in rule.excluded if (p := dotted(e)) and matches_prefix(parsed, p)]
            if not at_least(parsed, minimum) or (
                maximum is not None and not at_most(parsed, maximum)
            ):
                problems.append(f"GPU Operator {version} ({source}) is outside {span}")
            elif excluded:
                problems.append(f"GPU Operator {version} ({source}) is excluded ({excluded[0]})")
            else:
                facts.append(f"version {version} ({source}) within {span}")
        gpu_nodes = _gpu_nodes(view)
        missing = _missing_labels(view, rule.gfd_labels, gpu_nodes)
        if missing:
            problems.append(
                f"GFD labels missing on {count(len(missing), 'GPU node')}: {names(missing, 3)}"
            )
        elif rule.gfd_labels:
            facts.append(f"GFD labels on {count(len(gpu_nodes), 'GPU node')}")
    if problems:
        return Verdict(REQUIREMENT, "warn", "; ".join(problems))
    return Verdict(REQUIREMENT, "pass", "GPU Operator: " + ", ".join(facts))
