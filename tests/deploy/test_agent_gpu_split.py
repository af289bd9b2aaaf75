"""The agent DaemonSet split: GPU nodes run the agent through the NVIDIA runtime, others plain.

Every overlay is rendered with the real `kubectl kustomize` (tests/deploy/test_kustomize.py's
helpers); scheduling is decided by Kubernetes' own node-affinity rules
(nodeSelectorTerms are ORed, matchExpressions ANDed; NotIn and DoesNotExist match a
node without the label), applied to nodes as the GPU Operator labels them.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.support.kustomize import (
    AGENT_DAEMONSETS,
    NEEDS_KUBECTL,
    OVERLAYS,
    agent_container,
    one,
    render,
)

# Same condition as the deploy tests: rendering needs kubectl.
pytestmark = NEEDS_KUBECTL


GPU_LABEL = "nvidia.com/gpu.present"
PLAIN, GPU = AGENT_DAEMONSETS
# Nodes as they come: a GPU Operator GPU node, a CPU node the operator labelled "false",
# a node without any NVIDIA label (control plane, CPU worker), one with other labels.
NODES = {
    "gpu-node": ({GPU_LABEL: "true", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}, GPU),
    "cpu-node-labelled": ({GPU_LABEL: "false"}, PLAIN),
    "cpu-node": ({"kubernetes.io/os": "linux"}, PLAIN),
    "control-plane": ({"node-role.kubernetes.io/control-plane": ""}, PLAIN),
}


def _expression_matches(expr: dict[str, Any], labels: dict[str, str]) -> bool:
    key, operator, values = expr["key"], expr["operator"], expr.get("values", [])
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    raise AssertionError(f"operator {operator} not handled by this test")


def schedulable(pod: dict[str, Any], labels: dict[str, str]) -> bool:
    """Would the scheduler place this DaemonSet pod on a node with these labels?"""
    selector = pod.get("nodeSelector", {})
    if not selector.items() <= labels.items():
        return False
    required = (
        pod.get("affinity", {})
        .get("nodeAffinity", {})
        .get("requiredDuringSchedulingIgnoredDuringExecution")
    )
    if required is None:
        return True
    return any(
        all(_expression_matches(e, labels) for e in term.get("matchExpressions", []))
        for term in required["nodeSelectorTerms"]
    )


def pod_of(objs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    pod: dict[str, Any] = one(objs, "DaemonSet", name)["spec"]["template"]["spec"]
    return pod


def test_schedulable_helper_can_refuse() -> None:
    only_gpu = {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": GPU_LABEL, "operator": "In", "values": ["true"]}
                            ]
                        }
                    ]
                }
            }
        }
    }
    assert schedulable(only_gpu, {GPU_LABEL: "true"})
    assert not schedulable(only_gpu, {GPU_LABEL: "false"})
    assert not schedulable(only_gpu, {})
    assert not schedulable({"nodeSelector": {"a": "b"}}, {})
    assert schedulable({}, {})


@pytest.mark.parametrize("name", OVERLAYS)
@pytest.mark.parametrize("node", sorted(NODES))
def test_exactly_one_agent_per_node_and_the_gpu_one_on_gpu_nodes(name: str, node: str) -> None:
    objs = render(name)
    labels, expected = NODES[node]
    placed = [ds for ds in AGENT_DAEMONSETS if schedulable(pod_of(objs, ds), labels)]
    assert placed == [expected], f"{name}: {node} gets {placed}"


@pytest.mark.parametrize("name", OVERLAYS)
def test_gpu_agent_has_the_nvidia_runtime_for_utility_only(name: str) -> None:
    objs = render(name)
    gpu_pod = pod_of(objs, GPU)
    assert gpu_pod["runtimeClassName"] == "nvidia"
    env = {e["name"]: e.get("value") for e in agent_container(objs, GPU)["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    # utility = NVML and nvidia-smi; never compute, video, graphics or display.
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "utility"
    # No GPU requested from the device plugin: the agent takes none from Run:ai.
    resources = agent_container(objs, GPU)["resources"]
    for kind in ("requests", "limits"):
        assert not [r for r in resources.get(kind, {}) if "gpu" in r], resources

    plain_pod = pod_of(objs, PLAIN)
    assert "runtimeClassName" not in plain_pod, "the nvidia RuntimeClass exists only on GPU nodes"
    plain_env = {e["name"] for e in agent_container(objs, PLAIN)["env"]}
    assert not [e for e in plain_env if e.startswith("NVIDIA_")]


@pytest.mark.parametrize("name", OVERLAYS)
def test_both_unprivileged_with_a_read_only_root(name: str) -> None:
    objs = render(name)
    for ds in AGENT_DAEMONSETS:
        sc = agent_container(objs, ds)["securityContext"]
        assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False, ds
        assert sc["readOnlyRootFilesystem"] is True, ds
        assert sc["capabilities"] == {"drop": ["ALL"]}, ds
        assert pod_of(objs, ds)["securityContext"]["runAsNonRoot"] is True, ds


@pytest.mark.parametrize("name", OVERLAYS)
def test_selectors_are_disjoint(name: str) -> None:
    """Two DaemonSets must never claim each other's pods."""
    objs = render(name)
    sets = {ds: one(objs, "DaemonSet", ds)["spec"] for ds in AGENT_DAEMONSETS}
    for ds, spec in sets.items():
        own = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= own.items(), ds
        for other, other_spec in sets.items():
            if other != ds:
                other_labels = other_spec["template"]["metadata"]["labels"]
                assert not spec["selector"]["matchLabels"].items() <= other_labels.items()


def _without_split(daemonset: dict[str, Any]) -> dict[str, Any]:
    """The DaemonSet with everything the split is allowed to change taken out."""
    ds = copy.deepcopy(daemonset)
    ds["metadata"].pop("name")
    for labels in (
        ds["spec"]["selector"]["matchLabels"],
        ds["spec"]["template"]["metadata"]["labels"],
    ):
        labels.pop("preflight/runtime")
    pod = ds["spec"]["template"]["spec"]
    pod.pop("runtimeClassName", None)
    pod.pop("affinity")
    container = pod["containers"][0]
    container["env"] = [e for e in container["env"] if not e["name"].startswith("NVIDIA_")]
    return ds


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_two_daemonsets_differ_only_by_the_split(name: str) -> None:
    """Two files, one agent: a change to one must be made to the other too."""
    objs = render(name)
    plain, gpu = (one(objs, "DaemonSet", ds) for ds in AGENT_DAEMONSETS)
    assert plain != gpu
    assert _without_split(plain) == _without_split(gpu)
