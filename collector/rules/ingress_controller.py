"""ingress_controller: an IngressClass exists, and one is the default (Run:ai 2.8 and later).

Run:ai's preinstall-diagnostics only counts IngressClasses; since 2.18 the documents ask
for "a default ingress controller", i.e. an IngressClass annotated
`ingressclass.kubernetes.io/is-default-class: "true"` (an Ingress without a class then
lands on it).
"""

from __future__ import annotations

from collector.rules.model import Evidence, Verdict, count, names

REQUIREMENT = "ingress_controller"


def evaluate(view: Evidence) -> Verdict:
    platform = view.platform_or_unknown(REQUIREMENT)
    if isinstance(platform, Verdict):
        return platform
    read = platform.ingress
    if read.state == "not_installed":
        return Verdict(
            REQUIREMENT, "fail", "no IngressClass API (networking.k8s.io/v1) on this cluster"
        )
    if not read.ok:
        return Verdict(REQUIREMENT, "unknown", read.describe("IngressClasses"))
    classes = platform.ingress_classes
    if not classes:
        return Verdict(REQUIREMENT, "fail", "no IngressClass: no ingress controller is installed")
    shown = [f"{c.name} ({c.controller})" if c.controller else c.name for c in classes]
    defaults = [c.name for c in classes if c.default]
    if not defaults:
        return Verdict(
            REQUIREMENT,
            "warn",
            f"{count(len(classes), 'IngressClass')} ({names(shown)}) but none is the default",
        )
    return Verdict(
        REQUIREMENT,
        "pass",
        f"{count(len(classes), 'IngressClass')} ({names(shown)}); default: {names(defaults)}",
    )
