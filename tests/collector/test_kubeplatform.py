"""collector.kube.platform: the add-on reads against a kmock-served API of a 2026 cluster."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes import client

from collector.kube.adapter import KubeSource
from collector.kube.platform import PlatformSettings, operator_version, read_platform
from collector.kube.platform_facts import PlatformFacts
from tests.support.kube_cluster import NOT_FOUND, ClusterApi, cluster_api, fixture, forbidden


@pytest.fixture
async def api() -> AsyncIterator[ClusterApi]:
    async with cluster_api() as served:
        yield served


async def read(api: ClusterApi) -> PlatformFacts:
    view = await KubeSource(configuration=api.configuration(), platform_reader=read_platform).read()
    assert view.error is None, view.error
    assert view.platform is not None
    return view.platform


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("nodes", "V1NodeList"),
        ("ingressclasses", "V1IngressClassList"),
        ("storageclasses", "V1StorageClassList"),
        ("gpu-operator-deployment", "V1Deployment"),
        ("prometheus-crd", "V1CustomResourceDefinition"),
    ],
)
def test_fixtures_are_complete_for_the_strict_models(name: str, model: str) -> None:
    # If this failed, the fixture would not be what a real API server sends.
    parsed = client.ApiClient().deserialize(json.dumps(fixture(name)), model, "application/json")
    assert parsed is not None


async def test_a_complete_cluster_is_read(api: ClusterApi) -> None:
    view = await KubeSource(configuration=api.configuration(), platform_reader=read_platform).read()
    assert view.error is None
    platform = view.platform
    assert platform is not None
    assert [(c.name, c.controller, c.default) for c in platform.ingress_classes] == [
        ("nginx", "k8s.io/ingress-nginx", True)
    ]
    assert [(c.name, c.default) for c in platform.storage_classes] == [
        ("local-path", True),
        ("nfs-client", False),
    ]
    (policy,) = platform.cluster_policies
    assert (policy.name, policy.state, policy.namespace, policy.version) == (
        "cluster-policy",
        "ready",
        "gpu-operator",
        "25.10.0",
    )
    operator = platform.operator_deployment
    assert operator is not None
    assert (operator.namespace, operator.version, operator.version_source) == (
        "gpu-operator",
        "25.10.0",
        "app.kubernetes.io/version",
    )
    assert operator.image == "nvcr.io/nvidia/gpu-operator:v25.10.0"
    assert (operator.ready_replicas, operator.replicas) == (1, 1)
    assert platform.prometheus_crd.ok and platform.prometheus_crd_versions == ("v1",)
    assert platform.prometheus_objects == ("monitoring/kube-prometheus-stack-prometheus",)
    assert platform.openshift.state == "not_installed"
    nodes = {n.name: n for n in view.nodes}
    labels = dict(nodes["dgx-1"].nvidia_labels)
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert labels["nvidia.com/cuda.driver.major"] == "570"
    assert all(k.startswith("nvidia.com/") for k in labels)
    assert nodes["sys-1"].nvidia_labels == ()
    assert nodes["sys-1"].capacity_ephemeral_storage_bytes == 203056560 * 1024
    assert nodes["dgx-1"].container_runtime_version == "containerd://1.7.27"


async def test_platform_is_not_read_without_a_reader(api: ClusterApi) -> None:
    view = await KubeSource(configuration=api.configuration()).read()
    assert view.error is None and view.platform is None
    assert set(api.requests) == {"nodes"}


@pytest.mark.parametrize(
    ("key", "field"),
    [
        ("ingressclasses", "ingress"),
        ("storageclasses", "storage"),
        ("clusterpolicies", "cluster_policy"),
        ("prometheus-crd", "prometheus_crd"),
        ("prometheuses", "prometheus"),
    ],
)
async def test_a_missing_api_is_the_fact_not_installed(
    api: ClusterApi, key: str, field: str
) -> None:
    api.answers[key] = NOT_FOUND
    platform = await read(api)
    outcome = getattr(platform, field)
    assert outcome.state == "not_installed"
    assert "could not find" in outcome.detail
    # The other reads are unaffected.
    assert platform.openshift.state == "not_installed"
    others = [o for o in (platform.ingress, platform.storage, platform.prometheus) if o != outcome]
    assert all(o.ok for o in others)


async def test_no_operator_deployment_anywhere_is_not_installed(api: ClusterApi) -> None:
    api.answers["gpu-operator"] = NOT_FOUND
    platform = await read(api)
    assert platform.operator.state == "not_installed"
    assert "gpu-operator" in platform.operator.detail
    assert "nvidia-gpu-operator" in platform.operator.detail
    assert platform.operator_deployment is None


@pytest.mark.parametrize(
    ("key", "field", "answer", "permission"),
    [
        (
            "ingressclasses",
            "ingress",
            forbidden("list", "ingressclasses", "networking.k8s.io"),
            "list ingressclasses.networking.k8s.io",
        ),
        (
            "storageclasses",
            "storage",
            forbidden("list", "storageclasses", "storage.k8s.io"),
            "list storageclasses.storage.k8s.io",
        ),
        (
            "clusterpolicies",
            "cluster_policy",
            forbidden("list", "clusterpolicies", "nvidia.com"),
            "list clusterpolicies.nvidia.com",
        ),
        (
            "gpu-operator",
            "operator",
            forbidden("get", "deployments", "apps", "gpu-operator"),
            "get deployments.apps 'gpu-operator' in namespace 'gpu-operator'",
        ),
        (
            "prometheus-crd",
            "prometheus_crd",
            forbidden(
                "get",
                "customresourcedefinitions",
                "apiextensions.k8s.io",
                "prometheuses.monitoring.coreos.com",
            ),
            "get customresourcedefinitions.apiextensions.k8s.io "
            "'prometheuses.monitoring.coreos.com'",
        ),
        (
            "prometheuses",
            "prometheus",
            forbidden("list", "prometheuses", "monitoring.coreos.com"),
            "list prometheuses.monitoring.coreos.com",
        ),
        (
            "clusterversion",
            "openshift",
            forbidden("get", "clusterversions", "config.openshift.io", "version"),
            "get clusterversions.config.openshift.io 'version'",
        ),
    ],
)
async def test_forbidden_names_the_missing_permission(
    api: ClusterApi, key: str, field: str, answer: tuple[int, Any], permission: str
) -> None:
    api.answers[key] = answer
    platform = await read(api)
    outcome = getattr(platform, field)
    assert outcome.state == "forbidden"
    assert outcome.detail == permission
    assert permission in outcome.describe("X")


async def test_server_errors_and_garbage_are_errors(api: ClusterApi) -> None:
    api.answers["ingressclasses"] = (500, {"kind": "Status", "message": "etcdserver: timeout"})
    api.answers["storageclasses"] = (200, b"<html>proxy login</html>")
    api.answers["prometheuses"] = (200, {"kind": "PrometheusList", "items": "nope"})
    platform = await read(api)
    assert platform.ingress.state == "error" and "etcdserver: timeout" in platform.ingress.detail
    assert platform.storage.state == "error" and "not JSON" in platform.storage.detail
    assert platform.prometheus.state == "error" and "items" in platform.prometheus.detail
    assert platform.cluster_policy.ok


async def test_openshift_version_is_the_last_completed_update(api: ClusterApi) -> None:
    api.openshift()  # the fixture: updating to 4.19.9 (Partial), running 4.18.21
    platform = await read(api)
    assert platform.openshift.ok
    assert platform.openshift_version == "4.18.21"
    assert platform.openshift_history[0] == ("4.19.9", "Partial")
    assert len(platform.openshift_history) == 3


async def test_operator_namespace_comes_from_the_cluster_policy(api: ClusterApi) -> None:
    # OpenShift's OperatorHub installs into nvidia-gpu-operator, without Helm labels.
    policies = api.body("clusterpolicies")
    policies["items"][0]["status"]["namespace"] = "nvidia-gpu-operator"
    deployment = fixture("gpu-operator-deployment")
    deployment["metadata"]["namespace"] = "nvidia-gpu-operator"
    for label in ("app.kubernetes.io/version", "helm.sh/chart"):
        del deployment["metadata"]["labels"][label]
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = (
        "nvcr.io/nvidia/gpu-operator:v25.3.4"
    )
    api.answers["nvidia-gpu-operator"] = (200, deployment)
    api.answers["gpu-operator"] = forbidden("get", "deployments", "apps", "gpu-operator")
    platform = await read(api)
    operator = platform.operator_deployment
    assert operator is not None
    assert (operator.namespace, operator.version, operator.version_source) == (
        "nvidia-gpu-operator",
        "25.3.4",
        "image tag",
    )
    # The namespace the ClusterPolicy names is asked first; gpu-operator is never needed.
    assert "nvidia-gpu-operator" in api.requests
    assert "gpu-operator" not in api.requests


@pytest.mark.parametrize(
    ("labels", "images", "expected"),
    [
        ({"app.kubernetes.io/version": "v25.10.0"}, [], ("25.10.0", "app.kubernetes.io/version")),
        ({"helm.sh/chart": "gpu-operator-v24.9.2"}, [], ("24.9.2", "helm.sh/chart")),
        (
            {"helm.sh/chart": "other-chart-1.0"},
            ["nvcr.io/nvidia/gpu-operator:v23.9.1"],
            ("23.9.1", "image tag"),
        ),
        ({}, ["registry.corp:5000/nvidia/gpu-operator:v25.3.0"], ("25.3.0", "image tag")),
        ({}, ["registry.corp:5000/nvidia/gpu-operator@sha256:abc"], ("", "")),
        ({}, ["nvcr.io/nvidia/gpu-operator:latest"], ("", "")),
        ({"app.kubernetes.io/version": "devel"}, [], ("", "")),
    ],
)
def test_operator_version_sources(
    labels: dict[str, str], images: list[str], expected: tuple[str, str]
) -> None:
    assert operator_version(labels, images) == expected


async def test_lists_are_bounded_by_max_items(api: ClusterApi) -> None:
    # A server that always hands out another continue token must not be read forever.
    classes = api.body("storageclasses")
    classes["metadata"]["continue"] = "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MX0"
    settings = PlatformSettings(page_size=2, max_items=6)
    with client.ApiClient(api.configuration()) as raw:
        platform = await asyncio.to_thread(read_platform, raw, 5.0, settings)
    assert platform.storage.ok
    assert len(platform.storage_classes) == 6
    assert api.requests.count("storageclasses") == 3


async def test_reads_past_the_budget_are_not_started(api: ClusterApi) -> None:
    # A fake clock: every look at it costs 4 s of a 10 s budget.
    ticks = itertools.count(step=4.0)
    settings = PlatformSettings(budget=10.0)
    with client.ApiClient(api.configuration()) as raw:
        platform = await asyncio.to_thread(
            read_platform, raw, 5.0, settings, lambda: float(next(ticks))
        )
    assert platform.ingress.ok
    spent = [platform.openshift, platform.prometheus, platform.prometheus_crd]
    assert all(o.state == "error" and "budget" in o.detail for o in spent)
    assert "clusterversion" not in api.requests and "prometheuses" not in api.requests
