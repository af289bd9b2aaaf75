"""kubernetes_version: the profile's Kubernetes (and OpenShift) version range.

runai-2020: 1.15 or above required, 1.17 recommended. Later profiles give a validated
range: older than the minimum fails, newer than the maximum warns ("not yet validated",
never a fail: a new release usually works, it is just not on the support matrix).

The API server's version decides; kubelets older than the minimum fail too, since
workloads run on them. On OpenShift (a ClusterVersion `version` exists) the profile's
OpenShift range decides instead: OpenShift 4.18 ships Kubernetes 1.31, which Run:ai
supports as OpenShift although it would be below its plain-Kubernetes minimum.
"""

from __future__ import annotations

from collector.rules.memo import LastVerdict
from collector.rules.model import Evidence, Verdict, names
from collector.rules.versions import at_least, at_most, dotted, major_minor, render
from preflight.profile import KubernetesVersionRule

REQUIREMENT = "kubernetes_version"


def _openshift(view: Evidence) -> Verdict | None:
    """The verdict by the OpenShift range, or None when this is not OpenShift (or no range)."""
    wanted = view.profile.kubernetes_version.openshift
    platform = view.kube.platform
    if wanted is None or platform is None:
        return None
    if platform.openshift.state == "not_installed":
        return None
    if not platform.openshift.ok:
        # We cannot tell whether this is OpenShift: judge Kubernetes, but say why.
        return None
    version = dotted(platform.openshift_version)
    if version is None:
        return Verdict(
            REQUIREMENT,
            "unknown",
            f"OpenShift ClusterVersion reports no usable version ({platform.openshift_version!r})",
        )
    shown = platform.openshift_version
    minimum = dotted(wanted.minimum)
    maximum = dotted(wanted.maximum) if wanted.maximum else None
    assert minimum is not None, "profile versions are validated at load"
    span = f"{wanted.minimum}–{wanted.maximum}" if wanted.maximum else f"≥ {wanted.minimum}"
    partial = [v for v, state in platform.openshift_history[:1] if state == "Partial"]
    updating = f"; updating to {partial[0]}" if partial and partial[0] != shown else ""
    if not at_least(version, minimum):
        return Verdict(
            REQUIREMENT,
            "fail",
            f"OpenShift {shown} is below the supported {wanted.minimum} ({span}){updating}",
        )
    if maximum is not None and not at_most(version, maximum):
        return Verdict(
            REQUIREMENT,
            "warn",
            f"OpenShift {shown} is newer than {wanted.maximum}: not yet validated "
            f"({span}){updating}",
        )
    return Verdict(REQUIREMENT, "pass", f"OpenShift {shown} (supported {span}){updating}")


def _range(rule: KubernetesVersionRule) -> str:
    if rule.maximum:
        return f"{rule.minimum}–{rule.maximum}"
    return f"≥ {rule.minimum}"


# Every kubelet's version is parsed per judging: the verdict is kept while the Kubernetes
# view (but its fetch time) and the profile's range are the same.
_LAST = LastVerdict()


def evaluate(view: Evidence) -> Verdict:
    kube = view.kube
    inputs = (kube.error, kube.server_version, kube.nodes, kube.platform)
    return _LAST((inputs, view.profile.kubernetes_version), lambda: _evaluate(view))


def _evaluate(view: Evidence) -> Verdict:
    unknown = view.unknown_without_kubernetes(REQUIREMENT)
    if unknown:
        return unknown
    by_openshift = _openshift(view)
    if by_openshift is not None:
        return by_openshift
    verdict = _kubernetes(view)
    platform = view.kube.platform
    if (
        verdict.status == "fail"
        and view.profile.kubernetes_version.openshift is not None
        and platform is not None
        and platform.openshift.state in ("forbidden", "error")
    ):
        # An OpenShift cluster would be judged by its own range; we cannot tell if it is one.
        return Verdict(
            REQUIREMENT,
            "unknown",
            f"{verdict.reason}; "
            + platform.openshift.describe("the OpenShift ClusterVersion")
            + " (OpenShift is judged by its own range)",
            nodes=verdict.nodes,
        )
    return verdict


def _kubernetes(view: Evidence) -> Verdict:
    rule = view.profile.kubernetes_version
    minimum = major_minor(rule.minimum)
    recommended = major_minor(rule.recommended) if rule.recommended else None
    maximum = major_minor(rule.maximum) if rule.maximum else None
    assert minimum, "profile versions are validated at load"
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
    if maximum is not None and server > maximum:
        return Verdict(
            REQUIREMENT,
            "warn",
            f"Kubernetes {shown} is newer than {rule.maximum}: not yet validated "
            f"(supported {_range(rule)})",
        )
    if recommended is not None and server < recommended:
        return Verdict(
            REQUIREMENT,
            "warn",
            f"Kubernetes {shown} is supported; {rule.recommended} is recommended",
        )
    if recommended is not None:
        return Verdict(
            REQUIREMENT, "pass", f"Kubernetes {shown} (≥ {render(recommended)} recommended)"
        )
    return Verdict(REQUIREMENT, "pass", f"Kubernetes {shown} (supported {_range(rule)})")
