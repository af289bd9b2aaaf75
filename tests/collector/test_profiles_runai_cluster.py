"""Each later Run:ai profile judging a kmock-served 2026 cluster through the running collector.

For every profile: a cluster that passes every requirement (agents reporting over gRPC on
every node), then clusters that break one requirement the way a real one would, and the
outputs (/metrics one-hot, the JSON API, the status page) carrying the new requirements.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc.aio
import pytest

from collector.config import CollectorConfig, KubernetesConfig, ListenConfig
from collector.rules.model import Verdict
from collector.service import CollectorService
from preflight.plan import CLUSTER_DOMAIN_TARGET
from preflight.profile import load_profile
from preflight.v1 import report_pb2_grpc as pb_grpc
from tests.support.builders import report
from tests.support.kube_cluster import NOT_FOUND, ClusterApi, cluster_api, version_info

# Per profile: a Kubernetes version inside its range, a GPU Operator version inside its.
SUPPORTED = {
    "runai-2.13": ("v1.28.15", "v23.9.2"),
    "runai-2.18": ("v1.30.14", "v23.9.2"),
    "runai-2.25": ("v1.34.2", "v25.10.0"),
}
# Per profile: a Kubernetes version below its minimum.
TOO_OLD = {"runai-2.13": "v1.22.17", "runai-2.18": "v1.27.16", "runai-2.25": "v1.32.9"}
CLUSTER_DOMAIN = "runai.corp.example"
AGENTS = {"cp-1": 0, "sys-1": 0, "sys-2": 0, "sys-3": 0, "dgx-1": 8, "dgx-2": 8}


def supported_cluster(api: ClusterApi, profile: str) -> None:
    kubernetes, operator = SUPPORTED[profile]
    api.version = version_info(kubernetes)
    for node in api.body("nodes")["items"]:
        node["status"]["nodeInfo"]["kubeletVersion"] = kubernetes
        node["status"]["nodeInfo"]["kubeProxyVersion"] = kubernetes
    deployment = api.body("gpu-operator")
    deployment["metadata"]["labels"]["app.kubernetes.io/version"] = operator
    deployment["metadata"]["labels"]["helm.sh/chart"] = f"gpu-operator-{operator}"
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = (
        f"nvcr.io/nvidia/gpu-operator:{operator}"
    )
    api.body("clusterpolicies")["items"][0]["metadata"]["labels"]["app.kubernetes.io/version"] = (
        operator
    )


@pytest.fixture
async def api() -> AsyncIterator[ClusterApi]:
    async with cluster_api() as served:
        yield served


async def start(
    api: ClusterApi, profile: str, down: dict[str, dict[str, str]] | None = None
) -> CollectorService:
    config = CollectorConfig(
        listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"),
        profile=profile,
        cluster_domain=CLUSTER_DOMAIN,
        kubernetes=KubernetesConfig(mode="none", refresh_interval=0.1),
    )
    collector = CollectorService(config, kube_configuration=api.configuration())
    await collector.start()
    # Every node's agent also reached https://<cluster domain>/ with a verified certificate.
    targets = (*(t.name for t in load_profile(profile).egress.targets), CLUSTER_DOMAIN_TARGET)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
        stub = pb_grpc.CollectorStub(channel)
        for name, gpus in AGENTS.items():
            message = report(
                name,
                cores=16,
                memory=64 * 10**9,
                pci=gpus,
                driver=gpus,
                targets=targets,
                down=(down or {}).get(name),
            )
            # chronyd keeps these clocks: the agent's adjtimex probe says so.
            message.clock.available = message.clock.synchronised = True
            message.clock.state = "ok"
            await stub.Report(message, timeout=5)
    return collector


async def verdicts_when(
    collector: CollectorService, done: Callable[[dict[str, Verdict]], bool], limit: float = 10.0
) -> dict[str, Verdict]:
    deadline = time.monotonic() + limit
    while True:
        by_id = {v.requirement: v for v in collector.current_view().verdicts}
        if done(by_id):
            return by_id
        assert time.monotonic() < deadline, {r: (v.status, v.reason) for r, v in by_id.items()}
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("profile", sorted(SUPPORTED))
async def test_a_supported_cluster_passes_every_requirement(api: ClusterApi, profile: str) -> None:
    supported_cluster(api, profile)
    collector = await start(api, profile)
    try:
        wanted = set(load_profile(profile).requirement_phases())
        by_id = await verdicts_when(
            collector, lambda v: set(v) == wanted and all(x.status == "pass" for x in v.values())
        )
        assert set(by_id) == wanted
        assert dict(collector.current_view().ready) == {"install": True, "runtime": True}
    finally:
        await collector.stop()


def _no_ingress(api: ClusterApi) -> None:
    api.body("ingressclasses")["items"] = []


def _no_prometheus_operator(api: ClusterApi) -> None:
    api.answers["prometheus-crd"] = NOT_FOUND
    api.answers["prometheuses"] = NOT_FOUND


def _no_gpu_operator(api: ClusterApi) -> None:
    api.answers["clusterpolicies"] = NOT_FOUND
    api.answers["gpu-operator"] = NOT_FOUND


def _one_system_node(api: ClusterApi) -> None:
    for node in api.body("nodes")["items"]:
        if node["metadata"]["name"] != "sys-1":
            node["metadata"]["labels"].pop("node-role.kubernetes.io/runai-system", None)


def _no_default_storage_class(api: ClusterApi) -> None:
    for sc in api.body("storageclasses")["items"]:
        sc["metadata"].get("annotations", {}).pop(
            "storageclass.kubernetes.io/is-default-class", None
        )


def _docker_node(api: ClusterApi) -> None:
    # cri-dockerd still lets a kubelet run on Docker Engine.
    api.body("nodes")["items"][4]["status"]["nodeInfo"]["containerRuntimeVersion"] = (
        "docker://28.1.1"
    )


BREAKS: dict[str, tuple[Callable[[ClusterApi], None], str, str]] = {
    "ingress_controller": (_no_ingress, "fail", "no ingress controller"),
    "prometheus_stack": (_no_prometheus_operator, "fail", "no Prometheus Operator"),
    "gpu_operator": (_no_gpu_operator, "fail", "no GPU Operator"),
    "system_nodes": (_one_system_node, "fail", "at least 2 needed"),
    "default_storage_class": (_no_default_storage_class, "fail", "no default StorageClass"),
    "container_runtime": (_docker_node, "fail", "dgx-1 (docker://28.1.1)"),
}
CASES = [
    (profile, requirement)
    for profile in sorted(SUPPORTED)
    for requirement in [*BREAKS, "kubernetes_version"]
    if requirement in load_profile(profile).requirement_phases()
    # With a minimum of one, losing the label warns ("every node counts"), see the rule tests.
    and not (requirement == "system_nodes" and load_profile(profile).system_nodes.minimum < 2)  # type: ignore[union-attr]
]


@pytest.mark.parametrize(("profile", "requirement"), CASES)
async def test_a_cluster_failing_one_requirement(
    api: ClusterApi, profile: str, requirement: str
) -> None:
    supported_cluster(api, profile)
    if requirement == "kubernetes_version":
        api.version = version_info(TOO_OLD[profile])
        status, words = "fail", "is below the required"
    else:
        breaks, status, words = BREAKS[requirement]
        breaks(api)
    collector = await start(api, profile)
    try:
        by_id = await verdicts_when(
            collector, lambda v: requirement in v and v[requirement].status == status
        )
        assert words in by_id[requirement].reason
        # Only that requirement is off; the others still pass.
        others = {r: v.status for r, v in by_id.items() if r != requirement}
        assert set(others.values()) == {"pass"}, others
        assert dict(collector.current_view().ready)["install"] is False
    finally:
        await collector.stop()


async def test_openshift_is_judged_by_its_version_and_a_forbidden_read_names_the_permission(
    api: ClusterApi,
) -> None:
    supported_cluster(api, "runai-2.25")
    api.version = version_info("v1.31.9")  # what OpenShift 4.18 runs
    api.openshift([("4.18.21", "Completed"), ("4.18.12", "Completed")])
    collector = await start(api, "runai-2.25")
    try:
        by_id = await verdicts_when(
            collector,
            lambda v: (
                v.get("kubernetes_version", None) is not None
                and v["kubernetes_version"].status == "pass"
            ),
        )
        assert "OpenShift 4.18.21" in by_id["kubernetes_version"].reason
        _, page = await asyncio.to_thread(_get, f"http://127.0.0.1:{collector.http_port}/")
        assert "Kubernetes v1.31.9, 6 nodes (OpenShift 4.18.21)" in page
        api.answers["ingressclasses"] = (
            403,
            {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403},
        )
        by_id = await verdicts_when(
            collector, lambda v: v["ingress_controller"].status == "unknown"
        )
        assert "list ingressclasses.networking.k8s.io" in by_id["ingress_controller"].reason
    finally:
        await collector.stop()


def _get(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.headers.get("Content-Type", ""), response.read().decode()


async def test_outputs_carry_the_new_requirements(api: ClusterApi) -> None:
    supported_cluster(api, "runai-2.25")
    _no_default_storage_class(api)
    collector = await start(api, "runai-2.25")
    try:
        await verdicts_when(collector, lambda v: v["default_storage_class"].status == "fail")
        base = f"http://127.0.0.1:{collector.http_port}"
        _, metrics = await asyncio.to_thread(_get, f"{base}/metrics")
        _, api_json = await asyncio.to_thread(_get, f"{base}/api/v1/verdicts")
        _, page = await asyncio.to_thread(_get, f"{base}/")
    finally:
        await collector.stop()
    new = ("system_nodes", "gpu_operator", "ingress_controller", "prometheus_stack")
    for requirement in (*new, "default_storage_class", "container_runtime"):
        lines = [line for line in metrics.splitlines() if f'requirement="{requirement}"' in line]
        assert len(lines) == 4, requirement  # one-hot over pass/warn/fail/unknown
        assert sum(float(line.rsplit(" ", 1)[1]) for line in lines) == 1.0
    assert (
        'preflight_requirement_status{requirement="default_storage_class",status="fail"} 1.0'
        in metrics
    )
    assert 'preflight_cluster_ready{phase="install"} 0.0' in metrics
    assert 'preflight_cluster_ready{phase="runtime"} 1.0' in metrics
    body: dict[str, Any] = json.loads(api_json)
    assert body["profile"] == "runai-2.25"
    statuses = {v["requirement"]: v["status"] for v in body["verdicts"]}
    assert statuses["default_storage_class"] == "fail" and statuses["gpu_operator"] == "pass"
    assert "profile <b>runai-2.25</b>" in page
    assert 'data-requirement="default_storage_class"' in page
    # The storage class is needed for install only, per the profile.
    row = page.split('data-requirement="default_storage_class"', 1)[1].split("</tr>", 1)[0]
    assert ">install<" in row and "runtime" not in row


async def test_system_scoped_targets_are_required_from_system_nodes_only(api: ClusterApi) -> None:
    # runai-2.25: huggingface.co from (control-plane) system nodes only (G3).
    supported_cluster(api, "runai-2.25")
    collector = await start(
        api, "runai-2.25", down={"dgx-1": {"huggingface.co": "connect_timeout"}}
    )
    try:
        by_id = await verdicts_when(collector, lambda v: v["egress_runtime"].status == "pass")
        assert by_id["egress_runtime"].status == "pass"
    finally:
        await collector.stop()
    collector = await start(
        api, "runai-2.25", down={"sys-2": {"huggingface.co": "connect_timeout"}}
    )
    try:
        by_id = await verdicts_when(collector, lambda v: v["egress_runtime"].status == "fail")
        assert "sys-2" in by_id["egress_runtime"].reason
    finally:
        await collector.stop()
