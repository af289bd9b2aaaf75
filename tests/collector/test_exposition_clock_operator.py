"""Per-node clock series and the GPU Operator info series: present only where there is a
fact, and labels bounded however hostile the cluster's own strings are."""

from __future__ import annotations

import dataclasses

import pytest

from collector.concerns.clock import (
    NODE_CLOCK_ESTIMATED_ERROR,
    NODE_CLOCK_MAX_ERROR,
    NODE_CLOCK_SYNCHRONISED,
)
from collector.concerns.gpu_operator import GPU_OPERATOR_INFO, gpu_operator_labels
from collector.exposition import cluster_samples, node_samples
from collector.kube.facts import KubeFacts
from collector.kube.platform_facts import (
    OK,
    ClusterPolicyInfo,
    OperatorDeploymentInfo,
    PlatformFacts,
    ReadOutcome,
)
from collector.published import Published
from preflight.v1 import report_pb2 as pb
from tests.support.builders import entry, report, view

CLOCK_FAMILIES = (NODE_CLOCK_SYNCHRONISED, NODE_CLOCK_ESTIMATED_ERROR, NODE_CLOCK_MAX_ERROR)
DEPLOYMENT = OperatorDeploymentInfo(
    "gpu-operator", "gpu-operator", "v25.10.0", "helm.sh/chart", "img", 1, 1
)


def clock_samples(message: pb.NodeReport) -> dict[str, float]:
    return {
        family.name: value
        for family, _, value in node_samples(entry(message), None)
        if family in CLOCK_FAMILIES
    }


def test_clock_series_follow_the_kernel_state() -> None:
    message = report("n1")
    message.clock.CopyFrom(
        pb.ClockFacts(
            available=True,
            synchronised=False,
            state="error",
            estimated_error_seconds=0.5,
            maximum_error_seconds=16.0,
        )
    )
    assert clock_samples(message) == {
        "preflight_node_clock_synchronised": 0.0,
        "preflight_node_clock_estimated_error_seconds": 0.5,
        "preflight_node_clock_max_error_seconds": 16.0,
    }
    message.clock.synchronised = True
    assert clock_samples(message)["preflight_node_clock_synchronised"] == 1.0


def test_no_clock_series_without_a_kernel_answer() -> None:
    # An old agent (no section) or adjtimex failing: no series rather than a false 0.
    assert clock_samples(report("n1")) == {}
    message = report("n1")
    message.clock.CopyFrom(pb.ClockFacts(available=False, error="EPERM"))
    assert clock_samples(message) == {}


def platform(
    *policies: ClusterPolicyInfo, deployment: OperatorDeploymentInfo | None = None
) -> PlatformFacts:
    return PlatformFacts(
        cluster_policy=OK,
        cluster_policies=policies,
        operator=OK if deployment else ReadOutcome("not_installed"),
        operator_deployment=deployment,
    )


@pytest.mark.parametrize(
    ("view_of", "labels"),
    [
        (
            platform(ClusterPolicyInfo("cp", "ready", "gpu-operator", ""), deployment=DEPLOYMENT),
            ("v25.10.0", "helm.sh/chart", "ready"),
        ),
        (
            platform(ClusterPolicyInfo("cp", "notReady", "gpu-operator", "v24.9.2")),
            ("v24.9.2", "clusterpolicy app.kubernetes.io/version", "notReady"),
        ),
        (platform(ClusterPolicyInfo("cp", "", "", "")), ("", "", "unreconciled")),
        # The cluster's strings are not ours: folded into closed sets, never passed through.
        (platform(ClusterPolicyInfo("cp", "pwned\n{x=1}", "", "25.10; DROP")), ("", "", "other")),
        (platform(ClusterPolicyInfo("cp", "ready", "", "v" + "9" * 300)), ("", "", "ready")),
        (platform(deployment=DEPLOYMENT), ("v25.10.0", "helm.sh/chart", "absent")),
        (platform(), None),
        (None, None),
    ],
)
def test_gpu_operator_labels(view_of: PlatformFacts | None, labels: tuple[str, ...] | None) -> None:
    assert gpu_operator_labels(view_of) == labels


def test_a_forbidden_clusterpolicy_read_is_no_operator_fact() -> None:
    forbidden = dataclasses.replace(
        platform(ClusterPolicyInfo("cp", "ready", "", "")),
        cluster_policy=ReadOutcome("forbidden", "list clusterpolicies.nvidia.com"),
    )
    assert gpu_operator_labels(forbidden) is None


def test_one_gpu_operator_series_from_the_kubernetes_view() -> None:
    kube = KubeFacts(
        server_version="v1.33.1",
        error=None,
        platform=platform(ClusterPolicyInfo("cp", "ready", "", ""), deployment=DEPLOYMENT),
    )
    data = Published(state=view().state, verdicts=(), ready=(), kube=kube)
    found = [
        values for family, values, _ in cluster_samples(data, ()) if family is GPU_OPERATOR_INFO
    ]
    assert found == [("v25.10.0", "helm.sh/chart", "ready")]
    # The API unreadable: the last platform must not be shown as current.
    stale = dataclasses.replace(kube, error="unreachable")
    data = dataclasses.replace(data, kube=stale)
    assert not [f for f, _, _ in cluster_samples(data, ()) if f is GPU_OPERATOR_INFO]
