"""container_runtime: every node runs a container runtime the profile allows.

Read from each node's `status.nodeInfo.containerRuntimeVersion` ("containerd://1.7.27",
"cri-o://1.31.4", "docker://20.10.7"). Run:ai 2.20 and later support containerd and
CRI-O only (dockershim left Kubernetes in 1.24).
"""

from __future__ import annotations

from collector.rules.memo import LastVerdict
from collector.rules.model import Evidence, Verdict, count, names

REQUIREMENT = "container_runtime"


def runtime_name(version: str) -> str:
    """`containerd://1.7.27` → `containerd`; "" when the kubelet reports nothing."""
    name, sep, _ = version.partition("://")
    return name.strip().lower() if sep else version.strip().lower()


# Kept while the Kubernetes nodes and the profile's runtimes are the same.
_LAST = LastVerdict()


def evaluate(view: Evidence) -> Verdict:
    inputs = (view.kube.error, view.kube.nodes, view.profile.container_runtime)
    return _LAST(inputs, lambda: _evaluate(view))


def _evaluate(view: Evidence) -> Verdict:
    unknown = view.unknown_without_kubernetes(REQUIREMENT)
    if unknown:
        return unknown
    rule = view.profile.container_runtime
    allowed = tuple(a.lower() for a in rule.allowed) if rule else ("containerd", "cri-o")
    wrong: list[str] = []
    silent: list[str] = []
    seen: set[str] = set()
    for node in view.kube.nodes:
        name = runtime_name(node.container_runtime_version)
        if not name:
            silent.append(node.name)
        elif name not in allowed:
            wrong.append(f"{node.name} ({node.container_runtime_version})")
        else:
            seen.add(node.container_runtime_version)
    if wrong:
        return Verdict(
            REQUIREMENT,
            "fail",
            f"{count(len(wrong), 'node')} on a runtime other than {' or '.join(allowed)}: "
            f"{names(wrong)}",
            nodes=tuple(w.split(" ", 1)[0] for w in wrong),
        )
    if silent:
        return Verdict(
            REQUIREMENT,
            "unknown",
            f"{count(len(silent), 'node')} report no container runtime: {names(silent)}",
            nodes=tuple(silent),
        )
    if not view.kube.nodes:
        return Verdict(REQUIREMENT, "unknown", "no Kubernetes node visible")
    return Verdict(
        REQUIREMENT,
        "pass",
        f"{count(len(view.kube.nodes), 'node')} on {names(sorted(seen))}",
    )
