"""prometheus_stack: the Prometheus Operator's `Prometheus` kind exists, with ≥ 1 object.

Run:ai 2.9 and later install on top of kube-prometheus-stack: its preinstall-diagnostics
checks that the monitoring.coreos.com Prometheus kind exists. A kind without any
Prometheus object means the operator runs but nothing scrapes: a warning.
"""

from __future__ import annotations

from collector.rules.model import Evidence, Verdict, count, names

REQUIREMENT = "prometheus_stack"
KIND = "Prometheus kind (prometheuses.monitoring.coreos.com)"


def evaluate(view: Evidence) -> Verdict:
    platform = view.platform_or_unknown(REQUIREMENT)
    if isinstance(platform, Verdict):
        return platform
    crd, objects = platform.prometheus_crd, platform.prometheus
    # The CRD says whether the kind exists; when we may not read CRDs, listing the
    # objects says it too (404 on the list = the kind is not served).
    if crd.state == "not_installed" or (not crd.ok and objects.state == "not_installed"):
        return Verdict(REQUIREMENT, "fail", f"{KIND} missing: no Prometheus Operator installed")
    if not crd.ok and not objects.ok:
        return Verdict(REQUIREMENT, "unknown", crd.describe(KIND))
    if not objects.ok:
        return Verdict(
            REQUIREMENT, "unknown", f"{KIND} exists; " + objects.describe("Prometheus objects")
        )
    found = platform.prometheus_objects
    if not found:
        return Verdict(REQUIREMENT, "warn", f"{KIND} exists but no Prometheus object is defined")
    versions = f" (served {', '.join(platform.prometheus_crd_versions)})" if crd.ok else ""
    return Verdict(
        REQUIREMENT,
        "pass",
        f"{KIND}{versions} with {count(len(found), 'Prometheus object')}: {names(list(found))}",
    )
