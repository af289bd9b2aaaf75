"""collector.kube (adapter, watcher) against a Kubernetes API served by kmock on loopback.

The fixture node list (tests/fixtures/kube/gpu-cluster/nodes.json) holds complete Node
objects as `kubectl get nodes -o json` prints them; the official client's strict models
accept it (checked below), so the adapter is tested on what a real API sends.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import kmock
import pytest
from kmock import Response  # type: ignore[attr-defined]  # public, missing from __all__
from kubernetes import client

from collector.config import KubernetesConfig
from collector.kube.adapter import STANDALONE_ERROR, KubeSource
from collector.kube.facts import KubeFacts, KubeNode
from collector.kube.watcher import KubeWatcher
from tests.support.kube import FORBIDDEN, NODES, FakeApi, status, version_info
from tests.support.kube_api import respond, write_kubeconfig

GiB = 2**30
KiB = 1024


def by_name(view: KubeFacts) -> dict[str, KubeNode]:
    return {node.name: node for node in view.nodes}


def test_fixture_nodes_are_complete_for_the_strict_models() -> None:
    # If this failed, the fixture would not be what a real API server sends.
    nodes = client.ApiClient().deserialize(json.dumps(NODES), "V1NodeList", "application/json")
    assert len(nodes.items) == 5
    assert nodes.items[0].status.node_info.kube_proxy_version
    version = client.ApiClient().deserialize(
        json.dumps(version_info("v1.16.15-eks-abc")), "VersionInfo", "application/json"
    )
    assert version.git_version == "v1.16.15-eks-abc"


@pytest.mark.parametrize(
    "git", ["v1.14.10", "v1.15.12", "v1.16.15", "v1.17.9", "v1.31.4", "v1.16.15-eks-abc"]
)
async def test_server_version_is_reported(api: FakeApi, git: str) -> None:
    api.version = version_info(git)
    view = await KubeSource(configuration=api.configuration()).read()
    assert view.error is None
    assert view.server_version == git


async def test_version_without_git_version_falls_back_to_major_minor(api: FakeApi) -> None:
    api.version = {"major": "1", "minor": "16+"}
    view = await KubeSource(configuration=api.configuration()).read()
    assert view.error is None
    assert view.server_version == "v1.16"


async def test_nodes_roles_taints_resources_and_readiness(api: FakeApi) -> None:
    view = await KubeSource(configuration=api.configuration()).read()
    assert view.error is None and view.available
    assert view.fetched_at > 0
    nodes = by_name(view)
    assert sorted(nodes) == ["cp-1", "cpu-1", "gpu-1", "gpu-2", "master-legacy"]

    cp = nodes["cp-1"]
    assert cp.control_plane
    assert cp.roles == ("control-plane", "etcd")
    assert cp.taints == ("node-role.kubernetes.io/control-plane:NoSchedule",)
    assert cp.capacity_cpu == 2.0 and cp.allocatable_cpu == pytest.approx(1.9)
    assert cp.capacity_memory_bytes == 8167548 * KiB
    assert cp.capacity_gpus == 0 and cp.allocatable_gpus == 0
    assert cp.kubelet_version == "v1.17.9"
    assert cp.container_runtime_version == "containerd://1.3.4"
    assert cp.ready

    legacy = nodes["master-legacy"]
    assert legacy.control_plane and legacy.roles == ("master",)
    assert legacy.capacity_cpu == 4.0 and legacy.allocatable_cpu == 3.5
    assert legacy.capacity_memory_bytes == 16 * GiB
    assert legacy.allocatable_memory_bytes == 15 * GiB

    gpu1 = nodes["gpu-1"]
    assert not gpu1.control_plane and gpu1.roles == ("worker",)
    assert gpu1.capacity_gpus == 8 and gpu1.allocatable_gpus == 7
    assert gpu1.taints == ("nvidia.com/gpu=present:NoSchedule",)
    assert gpu1.allocatable_cpu == pytest.approx(63.8)
    assert gpu1.container_runtime_version == "docker://19.3.12"
    assert gpu1.ready

    gpu2 = nodes["gpu-2"]
    assert not gpu2.ready  # Ready condition "Unknown": the kubelet stopped posting
    assert gpu2.roles == ("gpu", "worker")
    assert gpu2.taints == (
        "nvidia.com/gpu=present:NoSchedule",
        "node.kubernetes.io/unreachable:NoExecute",
    )
    assert gpu2.capacity_memory_bytes == 256 * 10**9
    assert gpu2.allocatable_memory_bytes == 255 * 10**9
    assert gpu2.allocatable_cpu == 31.5
    assert gpu2.capacity_gpus == gpu2.allocatable_gpus == 4

    plain = nodes["cpu-1"]
    assert plain.roles == () and not plain.control_plane and plain.taints == ()
    assert plain.capacity_memory_bytes == 65970823168
    assert plain.allocatable_memory_bytes == 64 * GiB
    assert plain.capacity_gpus == 0


async def test_partial_node_objects_are_read_without_the_strict_models(api: FakeApi) -> None:
    # Some proxies and old distributions omit fields the generated models require.
    api.nodes = {
        "kind": "NodeList",
        "apiVersion": "v1",
        "metadata": {},
        "items": [
            {
                "metadata": {"name": "bare", "labels": {"kubernetes.io/role": "master"}},
                "status": {"capacity": {"cpu": "4", "memory": "8Gi"}, "nodeInfo": {}},
            }
        ],
    }
    view = await KubeSource(configuration=api.configuration()).read()
    assert view.error is None
    (node,) = view.nodes
    assert node.name == "bare" and node.control_plane and node.roles == ("master",)
    assert node.capacity_cpu == 4.0 and node.allocatable_cpu == 0.0
    assert node.kubelet_version == "" and not node.ready


async def test_node_list_is_paginated(api: FakeApi) -> None:
    items = NODES["items"]

    def pages(request: kmock.Request) -> Response:
        api.node_requests.append(request)
        if request.params.get("continue") == "page-2":
            return respond(200, {"kind": "NodeList", "metadata": {}, "items": items[3:]})
        return respond(
            200, {"kind": "NodeList", "metadata": {"continue": "page-2"}, "items": items[:3]}
        )

    api.handler["get /api/v1/nodes"] ** 10 << pages  # higher priority than the fixture's
    view = await KubeSource(configuration=api.configuration(), page_size=3).read()
    assert view.error is None
    assert len(view.nodes) == 5
    assert [r.params.get("limit") for r in api.node_requests] == ["3", "3"]
    assert [r.params.get("continue") for r in api.node_requests] == [None, "page-2"]


async def test_forbidden_is_an_error_naming_403(api: FakeApi) -> None:
    api.nodes_override = (403, FORBIDDEN)
    view = await KubeSource(configuration=api.configuration()).read()
    assert view.error is not None and not view.available
    assert "403" in view.error and "forbids listing nodes" in view.error
    assert "cannot list resource" in view.error  # the API's own message
    assert view.nodes == ()
    assert view.server_version == "v1.17.9"  # read before the list failed; kept for display


async def test_unauthorized_is_an_error_naming_401(api: FakeApi) -> None:
    api.nodes_override = (401, status(401, "Unauthorized", "Unauthorized"))
    view = await KubeSource(configuration=api.configuration()).read()
    assert view.error is not None
    assert "401" in view.error and "credentials" in view.error


async def test_server_error_names_the_status(api: FakeApi) -> None:
    api.nodes_override = (503, status(503, "ServiceUnavailable", "etcdserver: leader changed"))
    view = await KubeSource(configuration=api.configuration()).read()
    assert view.error is not None
    assert "503" in view.error and "etcdserver: leader changed" in view.error


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"<html><body>Sign in to the corporate portal</body></html>", "not JSON"),
        ({"kind": "NodeList", "items": {"name": "x"}}, "no items array"),
        ({"kind": "PodList", "items": []}, "not a NodeList"),
        ({"kind": "NodeList", "items": [{"metadata": {}}]}, "no metadata.name"),
        (
            {
                "kind": "NodeList",
                "items": [{"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "four"}}}],
            },
            "not a Kubernetes quantity: 'four'",
        ),
    ],
)
async def test_garbage_is_an_error(api: FakeApi, body: Any, expected: str) -> None:
    api.nodes_override = (200, body)
    view = await KubeSource(configuration=api.configuration()).read()
    assert view.error is not None
    assert "unreadable" in view.error and expected in view.error
    assert view.nodes == ()


async def test_unreachable_api_is_an_error(api: FakeApi) -> None:
    source = KubeSource(configuration=api.configuration())
    await api.stop()
    view = await source.read()
    assert view.error is not None
    assert "unreachable" in view.error and "connection refused" in view.error
    assert api.host in view.error


async def test_api_that_never_answers_times_out(api: FakeApi) -> None:
    release = asyncio.Event()

    async def hang(request: kmock.Request) -> Response:
        await release.wait()
        return respond(200, NODES)

    api.handler["get /api/v1/nodes"] ** 10 << hang
    source = KubeSource(configuration=api.configuration(), request_timeout=0.3)
    try:
        view = await source.read()
    finally:
        release.set()
    assert view.error is not None
    assert "unreachable" in view.error and "timed out" in view.error


async def test_injected_configuration_is_not_modified(api: FakeApi) -> None:
    configuration = api.configuration()
    await KubeSource(configuration=configuration).read()
    assert configuration.retries is None


async def test_mode_none_is_standalone() -> None:
    source = KubeSource.from_config(KubernetesConfig(mode="none"))
    assert source.standalone
    view = await source.read()
    assert view.error == STANDALONE_ERROR
    assert view.nodes == () and view.server_version == ""


async def test_auto_without_anything_is_standalone(tmp_path: Path) -> None:
    source = KubeSource("auto", environ={"HOME": str(tmp_path)})
    view = await source.read()
    assert view.error == STANDALONE_ERROR
    assert not source.standalone  # a kubeconfig may still appear later


async def test_kubeconfig_mode_reads_the_file(api: FakeApi, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "config", api.host)
    config = KubernetesConfig(mode="kubeconfig", kubeconfig=kubeconfig)
    view = await KubeSource.from_config(config).read()
    assert view.error is None
    assert len(view.nodes) == 5
    # The token from the kubeconfig is sent.
    assert api.node_requests[-1].headers.get("Authorization") == "Bearer not-a-real-token"


async def test_auto_finds_kubeconfig_through_the_environment(api: FakeApi, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kc.yaml", api.host)
    environ = {"HOME": str(tmp_path / "nohome"), "KUBECONFIG": f"{tmp_path}/missing:{kubeconfig}"}
    view = await KubeSource("auto", environ=environ).read()
    assert view.error is None and len(view.nodes) == 5


async def test_auto_finds_kubeconfig_in_home(api: FakeApi, tmp_path: Path) -> None:
    (tmp_path / ".kube").mkdir()
    write_kubeconfig(tmp_path / ".kube" / "config", api.host)
    view = await KubeSource("auto", environ={"HOME": str(tmp_path)}).read()
    assert view.error is None and len(view.nodes) == 5


async def test_kubeconfig_mode_without_a_file_is_an_error(tmp_path: Path) -> None:
    source = KubeSource("kubeconfig", kubeconfig=tmp_path / "absent")
    view = await source.read()
    assert view.error is not None
    assert "configuration unusable" in view.error and "absent" in view.error


async def test_broken_kubeconfig_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncurrent-context: nowhere\n")
    view = await KubeSource("kubeconfig", kubeconfig=path).read()
    assert view.error is not None and "configuration unusable" in view.error


async def test_in_cluster_outside_a_pod_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    view = await KubeSource("in-cluster").read()
    assert view.error is not None and "in-cluster" in view.error


async def test_auto_means_in_cluster_inside_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    # The service host is set but no service account is mounted: in-cluster was chosen.
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "1")
    view = await KubeSource("auto").read()
    assert view.error is not None and "in-cluster" in view.error


@pytest.mark.timeout(60)
async def test_watcher_reports_errors_and_recovers(api: FakeApi) -> None:
    source = KubeSource(configuration=api.configuration(), request_timeout=2.0)
    watcher = KubeWatcher(source, refresh_interval=0.05, backoff_initial=0.05, backoff_max=0.2)
    assert watcher.latest().error is not None  # nothing read yet is never "fine"

    async def until(predicate: Any, what: str) -> KubeFacts:
        for _ in range(200):
            view = await watcher.next_view(timeout=10)
            if predicate(view):
                return view
        raise AssertionError(f"watcher never reached: {what}; last {watcher.latest()}")

    await watcher.start()
    try:
        good = await until(lambda v: v.available, "first good read")
        assert len(good.nodes) == 5
        assert watcher.last_good == good

        api.nodes_override = (403, FORBIDDEN)
        forbidden = await until(lambda v: v.error is not None, "403")
        assert forbidden.error is not None and "403" in forbidden.error
        # Stale nodes are not served as current, but the last good view is kept apart.
        assert watcher.latest().nodes == ()
        assert watcher.last_good is not None and len(watcher.last_good.nodes) == 5

        await api.stop()
        gone = await until(
            lambda v: v.error is not None and "unreachable" in v.error, "unreachable"
        )
        assert gone.nodes == ()
        assert watcher.consecutive_errors >= 2

        api.nodes_override = None
        api.nodes["items"] = api.nodes["items"][:2]
        await api.start()
        back = await until(lambda v: v.available, "recovery")
        assert sorted(n.name for n in back.nodes) == ["cp-1", "master-legacy"]
        assert watcher.consecutive_errors == 0
        assert watcher.last_good == back
    finally:
        await watcher.stop()
    reads = watcher.reads
    await asyncio.sleep(0.2)
    assert watcher.reads == reads  # stopped means stopped


async def test_watcher_standalone_reads_once() -> None:
    watcher = KubeWatcher.from_config(KubernetesConfig(mode="none", refresh_interval=0.01))
    assert watcher.latest().error == STANDALONE_ERROR
    await watcher.start()
    view = await watcher.next_view(timeout=5)
    await asyncio.sleep(0.1)
    await watcher.stop()
    assert view.error == STANDALONE_ERROR
    assert watcher.reads == 1


async def test_watcher_from_config_with_injected_configuration(api: FakeApi) -> None:
    config = KubernetesConfig(mode="none", refresh_interval=30)
    watcher = KubeWatcher.from_config(config, configuration=api.configuration())
    assert watcher.refresh_interval == 30
    view = await watcher.refresh()
    assert view.error is None and watcher.latest() is view


@pytest.mark.timeout(30)
async def test_hung_credential_plugin_is_bounded_and_not_doubled(tmp_path: Path) -> None:
    # An exec credential plugin that hangs (the client waits for it with no timeout).
    started = tmp_path / "started"
    plugin = tmp_path / "get-token"
    plugin.write_text(f"#!/bin/sh\necho run >> {started}\nsleep 1\n")
    plugin.chmod(0o755)
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
                "users": [
                    {
                        "name": "u",
                        "user": {
                            "exec": {
                                "apiVersion": "client.authentication.k8s.io/v1beta1",
                                "command": str(plugin),
                            }
                        },
                    }
                ],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    source = KubeSource("kubeconfig", kubeconfig=kubeconfig, request_timeout=0.2)
    first = await source.read()
    assert first.error is not None and "no answer within" in first.error
    second = await source.read()
    assert second.error is not None and "still blocked" in second.error
    assert started.read_text().count("run") == 1  # no second plugin run while one hangs
    for _ in range(100):  # the plugin ends; the next read is a fresh attempt
        await asyncio.sleep(0.1)
        third = await source.read()
        if third.error is None or "still blocked" not in third.error:
            break
    assert third.error is not None and "still blocked" not in third.error
    assert started.read_text().count("run") == 2
