"""kubernetes_version: 1.15 or above required, 1.17 recommended (thresholds from the profile).

The API server's version decides; kubelets older than the minimum fail too, since
workloads run on them. A version newer than anything the profile knows passes.
"""

from __future__ import annotations

from collector.rules.model import ClusterView, Verdict, names
from collector.rules.versions import major_minor, render

REQUIREMENT = "kubernetes_version"


def evaluate(view: ClusterView) -> Verdict:
    unknown = view.unknown_without_kubernetes(REQUIREMENT)
    if unknown:
        return unknown
    rule = view.profile.kubernetes_version
    minimum, recommended = major_minor(rule.minimum), major_minor(rule.recommended)
    assert minimum and recommended, "profile versions are validated at load"
    server = major_minor(view.kube.server_version)
    if server is None:
        return Verdict(REQUIREMENT, "unknown", f"cannot parse version {view.kube.server_version!r}")
    old_kubelets = sorted(
        n.name
        for n in view.kube.nodes
        if (v := major_minor(n.kubelet_version)) is not None and v < minimum
    )
    shown = view.kube.server_version
    if server < minimum:
        return Verdict(
            REQUIREMENT, "fail", f"Kubernetes {shown} is below the required {rule.minimum}"
        )
    if old_kubelets:
        return Verdict(
            REQUIREMENT,
            "fail",
            f"kubelets below the required {rule.minimum} on {names(old_kubelets)}",
            nodes=tuple(old_kubelets),
        )
    if server < recommended:
        return Verdict(
            REQUIREMENT,
            "warn",
            f"Kubernetes {shown} is supported; {rule.recommended} is recommended",
        )
    return Verdict(REQUIREMENT, "pass", f"Kubernetes {shown} (≥ {render(recommended)} recommended)")
