"""Concern `gpu_operator`: the NVIDIA GPU Operator the Kubernetes API shows.

/metrics: one info series with its version and ClusterPolicy state (the gpu_operator rule
judges them). Cluster-wide only: it comes from the API, not from the agents.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from collector.concerns.base import Concern, Sample, gauge
from collector.kube.platform_facts import PlatformFacts
from collector.published import Published

# ClusterPolicy status.state values (NVIDIA/gpu-operator api/nvidia/v1 State); any other
# value is "other", none yet "unreconciled", no ClusterPolicy at all "absent".
_POLICY_STATES = frozenset({"ready", "notReady", "ignored", "disabled"})
_VERSION_SOURCES = frozenset(
    {
        "app.kubernetes.io/version",
        "helm.sh/chart",
        "image tag",
        "clusterpolicy app.kubernetes.io/version",
    }
)
# A version label, not free text: v25.10.0, 25.10.0-rc.1, 23.9.2+build (at most 40 chars).
VERSION_LABEL_MAX = 40
_VERSION_LABEL = re.compile(r"^(v?\d+(\.\d+){0,3}([-+][0-9A-Za-z.-]{1,24})?)?$")

GPU_OPERATOR_INFO = gauge(
    "preflight_gpu_operator_info",
    "The NVIDIA GPU Operator found: its version and ClusterPolicy state.",
    ("version", "version_source", "state"),
    False,
)


def gpu_operator_labels(platform: PlatformFacts | None) -> tuple[str, str, str] | None:
    """(version, version_source, state) of the GPU Operator; None when none is installed.

    Both values come from the cluster, not from us: the version is kept only when it looks
    like one, the state is folded into ClusterPolicy's closed set, so one series at most.
    """
    if platform is None:
        return None
    policies = platform.cluster_policies if platform.cluster_policy.ok else ()
    deployment = platform.operator_deployment if platform.operator.ok else None
    if not policies and deployment is None:
        return None
    version, source = "", ""
    if deployment is not None and deployment.version:
        version, source = deployment.version, deployment.version_source
    elif policies and policies[0].version:
        version, source = policies[0].version, "clusterpolicy app.kubernetes.io/version"
    if len(version) > VERSION_LABEL_MAX or not _VERSION_LABEL.match(version):
        version, source = "", ""
    source = source if source in _VERSION_SOURCES else ""
    if not policies:
        state = "absent"
    else:
        raw = policies[0].state
        state = raw if raw in _POLICY_STATES else ("unreconciled" if not raw else "other")
    return version, source, state


def cluster_samples(view: Published, expiries: Iterable[dict[str, float]]) -> Iterator[Sample]:
    operator = gpu_operator_labels(view.kube.platform) if view.kube.available else None
    if operator is not None:
        yield GPU_OPERATOR_INFO, operator, 1.0


CONCERN = Concern(
    name="gpu_operator", families=(GPU_OPERATOR_INFO,), cluster_samples=cluster_samples
)
