"""Table tests of the rules the later Run:ai profiles add (pure: plain data in, verdict out)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from collector.kube.facts import KubeFacts, KubeNode
from collector.kube.platform_facts import (
    OK,
    ClusterPolicyInfo,
    IngressClassInfo,
    OperatorDeploymentInfo,
    PlatformFacts,
    ReadOutcome,
    StorageClassInfo,
)
from collector.rules import (
    RULES,
    clock_sync,
    cluster_domain_tls,
    cluster_ready,
    container_runtime,
    default_storage_class,
    evaluate_all,
    gpu_operator,
    ingress_controller,
    kubernetes_version,
    prometheus_stack,
    system_nodes,
)
from collector.rules.model import Evidence
from preflight.profile import Profile, load_profile
from tests.support.builders import NOW, entry, kube_node, report, view

P225 = load_profile("runai-2.25")
P218 = load_profile("runai-2.18")
P213 = load_profile("runai-2.13")
P2020 = load_profile("runai-2020")
GB = 10**9
NOT_INSTALLED = ReadOutcome("not_installed", "the server could not find the requested resource")
GFD = (
    ("nvidia.com/cuda.driver.major", "570"),
    ("nvidia.com/cuda.driver.minor", "172"),
    ("nvidia.com/cuda.driver.rev", "08"),
    ("nvidia.com/cuda.runtime.major", "12"),
    ("nvidia.com/cuda.runtime.minor", "8"),
    ("nvidia.com/gfd.timestamp", "1772444477"),
    ("nvidia.com/gpu.compute.major", "9"),
    ("nvidia.com/gpu.compute.minor", "0"),
    ("nvidia.com/gpu.count", "8"),
    ("nvidia.com/gpu.family", "hopper"),
    ("nvidia.com/gpu.machine", "DGXH100"),
    ("nvidia.com/gpu.memory", "81559"),
    ("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"),
    ("nvidia.com/mig.strategy", "single"),
)


def forbidden(permission: str) -> ReadOutcome:
    return ReadOutcome("forbidden", permission)


def node(name: str, *, roles: tuple[str, ...] = (), **changes: Any) -> KubeNode:
    sizes = {k: changes.pop(k) for k in ("cpu", "memory", "gpus") if k in changes}
    base = kube_node(name, kubelet="v1.34.2", **sizes)
    return dataclasses.replace(
        base,
        roles=roles,
        container_runtime_version=changes.pop("runtime", "containerd://1.7.27"),
        capacity_ephemeral_storage_bytes=changes.pop("disk", 200 * GB),
        **changes,
    )


def system(name: str, **changes: Any) -> KubeNode:
    return node(name, roles=("runai-system",), cpu=changes.pop("cpu", 16), **changes)


def gpu(name: str, labels: tuple[tuple[str, str], ...] = GFD) -> KubeNode:
    return node(name, roles=("runai-gpu-worker",), gpus=8, nvidia_labels=labels)


def healthy_platform(**changes: Any) -> PlatformFacts:
    base = PlatformFacts(
        ingress=OK,
        ingress_classes=(IngressClassInfo("nginx", "k8s.io/ingress-nginx", True),),
        storage=OK,
        storage_classes=(
            StorageClassInfo("local-path", "rancher.io/local-path", True),
            StorageClassInfo("nfs-client", "cluster.local/nfs", False),
        ),
        cluster_policy=OK,
        cluster_policies=(ClusterPolicyInfo("cluster-policy", "ready", "gpu-operator", "25.10.0"),),
        operator=OK,
        operator_deployment=OperatorDeploymentInfo(
            "gpu-operator",
            "gpu-operator",
            "25.10.0",
            "app.kubernetes.io/version",
            "nvcr.io/nvidia/gpu-operator:v25.10.0",
            1,
            1,
        ),
        prometheus_crd=OK,
        prometheus_crd_versions=("v1",),
        prometheus=OK,
        prometheus_objects=("monitoring/kube-prometheus-stack-prometheus",),
        openshift=NOT_INSTALLED,
    )
    return dataclasses.replace(base, **changes)


HEALTHY_NODES = (system("sys-1"), system("sys-2"), system("sys-3"), gpu("dgx-1"), gpu("dgx-2"))


def cluster_view(
    profile: Profile = P225,
    *,
    nodes: tuple[KubeNode, ...] = HEALTHY_NODES,
    version: str = "v1.34.2",
    platform: PlatformFacts | None = None,
    reports: tuple[Any, ...] = (),
) -> Evidence:
    kube = KubeFacts(
        server_version=version,
        nodes=nodes,
        error=None,
        fetched_at=NOW,
        platform=healthy_platform() if platform is None else platform,
    )
    base = view(*reports, kube=kube)
    return dataclasses.replace(base, profile=profile)


def test_every_profile_judges_known_rules_and_2020_is_unchanged() -> None:
    assert P2020.requirements is None
    assert [v.requirement for v in evaluate_all(view())] == [
        "kubernetes_version",
        "control_plane_hardware",
        "shared_volume",
        "egress_install",
        "egress_runtime",
        "agent_coverage",
        "gpu_nodes",
    ]
    for profile in (P213, P218, P225):
        judged = [v.requirement for v in evaluate_all(cluster_view(profile))]
        assert judged == [r for r in RULES if r in profile.requirement_phases()]


# --- kubernetes_version ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "version", "status", "words"),
    [
        (P225, "v1.32.9", "fail", "below the required 1.33"),
        (P225, "v1.33.0", "pass", "supported 1.33–1.35"),
        (P225, "v1.35.1", "pass", "supported 1.33–1.35"),
        (P225, "v1.36.0", "warn", "not yet validated"),
        (P225, "v1.40.0", "warn", "not yet validated"),
        (P218, "v1.27.4-eks-2d98532", "fail", "below the required 1.28"),
        (P218, "v1.30.14", "pass", "1.28–1.30"),
        (P218, "v1.31.0", "warn", "newer than 1.30"),
        (P213, "v1.22.17", "fail", "below"),
        (P213, "v1.28.2", "pass", "1.23–1.28"),
        (P2020, "v1.16.15", "warn", "1.17 is recommended"),
        (P2020, "v1.34.2", "pass", "recommended"),
    ],
)
def test_kubernetes_version_ranges(profile: Profile, version: str, status: str, words: str) -> None:
    verdict = kubernetes_version.evaluate(cluster_view(profile, version=version))
    assert (verdict.status, words in verdict.reason) == (status, True), verdict.reason


@pytest.mark.parametrize(
    ("profile", "running", "status", "words"),
    [
        (P225, "4.17.30", "fail", "OpenShift 4.17.30 is below the supported 4.18"),
        (P225, "4.18.21", "pass", "OpenShift 4.18.21 (supported 4.18–4.21)"),
        (P225, "4.21.2", "pass", "4.18–4.21"),
        (P225, "4.22.0", "warn", "not yet validated"),
        (P218, "4.18.21", "warn", "newer than 4.16"),
        (P213, "4.9.59", "fail", "below the supported 4.10"),
    ],
)
def test_openshift_is_judged_by_its_own_range(
    profile: Profile, running: str, status: str, words: str
) -> None:
    # OpenShift 4.18 ships Kubernetes 1.31: below 2.25's Kubernetes minimum, yet supported.
    platform = healthy_platform(
        openshift=OK, openshift_version=running, openshift_history=((running, "Completed"),)
    )
    verdict = kubernetes_version.evaluate(
        cluster_view(profile, version="v1.31.9", platform=platform)
    )
    assert verdict.status == status, verdict.reason
    assert words in verdict.reason


def test_openshift_update_in_progress_is_said() -> None:
    platform = healthy_platform(
        openshift=OK,
        openshift_version="4.18.21",
        openshift_history=(("4.19.9", "Partial"), ("4.18.21", "Completed")),
    )
    verdict = kubernetes_version.evaluate(cluster_view(platform=platform))
    assert verdict.status == "pass"
    assert "updating to 4.19.9" in verdict.reason


def test_unreadable_cluster_version_never_fails_an_openshift_cluster() -> None:
    platform = healthy_platform(
        openshift=forbidden("get clusterversions.config.openshift.io 'version'")
    )
    verdict = kubernetes_version.evaluate(cluster_view(version="v1.31.9", platform=platform))
    assert verdict.status == "unknown"
    assert "get clusterversions.config.openshift.io" in verdict.reason
    # Within range, the unreadable ClusterVersion does not matter.
    ok = kubernetes_version.evaluate(cluster_view(version="v1.34.2", platform=platform))
    assert ok.status == "pass"


# --- system_nodes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "nodes", "status", "words"),
    [
        (P225, HEALTHY_NODES, "pass", "3 system nodes (≥ 1), each ≥ 10 cores, 20 GB, 50 GB"),
        (P225, (system("sys-1"), gpu("dgx-1")), "warn", "3 are recommended"),
        (P225, (system("sys-1", cpu=8), system("sys-2"), system("sys-3")), "warn", "8 cores"),
        (
            P225,
            (system("sys-1", memory=16 * 2**30), system("sys-2"), system("sys-3")),
            "warn",
            "17.2 GB",
        ),
        (
            P225,
            (system("sys-1", disk=40 * GB), system("sys-2"), system("sys-3")),
            "warn",
            "40 GB root disk",
        ),
        (P225, (gpu("dgx-1"), gpu("dgx-2")), "warn", "every node counts as a system node"),
        (P213, (system("sys-1"), gpu("dgx-1")), "fail", "at least 2 needed"),
        (P213, (system("sys-1"), system("sys-2")), "pass", "2 system nodes"),
        (P213, (gpu("dgx-1"),), "fail", "1 node in the cluster; at least 2 needed"),
        (P218, (system("sys-1", cpu=8), system("sys-2", cpu=8), system("s3", cpu=8)), "pass", ""),
        (P225, (system("sys-1", cpu=8), system("s2", cpu=8), system("s3", cpu=8)), "warn", ""),
    ],
)
def test_system_nodes(
    profile: Profile, nodes: tuple[KubeNode, ...], status: str, words: str
) -> None:
    verdict = system_nodes.evaluate(cluster_view(profile, nodes=nodes))
    assert verdict.status == status, verdict.reason
    assert words in verdict.reason


def test_system_node_size_comes_from_its_agent_when_one_reports() -> None:
    # Kubernetes says 16 cores; the agent on sys-1 sees the machine's 8.
    small = entry(report("sys-1", cores=8, memory=64 * GB))
    verdict = system_nodes.evaluate(cluster_view(reports=(small,)))
    assert verdict.status == "warn"
    assert "sys-1 (8 cores)" in verdict.reason
    assert verdict.nodes == ("sys-1",)


def test_system_node_root_disk_comes_from_its_agent_when_one_reports() -> None:
    message = report("sys-2", cores=16, memory=64 * GB)
    message.hardware.filesystems.add(role="root", path="/", capacity_bytes=40 * GB)
    verdict = system_nodes.evaluate(cluster_view(reports=(entry(message),)))
    assert verdict.status == "warn"
    assert "sys-2 (40 GB root disk)" in verdict.reason


# --- container_runtime ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("runtimes", "status", "words"),
    [
        (("containerd://1.7.27", "cri-o://1.31.4"), "pass", "2 nodes on containerd://1.7.27"),
        (("containerd://2.1.1", "docker://20.10.24"), "fail", "n1 (docker://20.10.24)"),
        (("containerd://1.7.27", ""), "unknown", "report no container runtime"),
        (("CRI-O://1.33.0",), "pass", "1 node"),
    ],
)
def test_container_runtime(runtimes: tuple[str, ...], status: str, words: str) -> None:
    nodes = tuple(node(f"n{i}", runtime=r) for i, r in enumerate(runtimes))
    verdict = container_runtime.evaluate(cluster_view(nodes=nodes))
    assert verdict.status == status, verdict.reason
    assert words in verdict.reason


# --- ingress_controller, default_storage_class, prometheus_stack -----------------------------

NGINX = IngressClassInfo("nginx", "k8s.io/ingress-nginx", True)
TRAEFIK = IngressClassInfo("traefik", "traefik.io/ingress-controller", False)


@pytest.mark.parametrize(
    ("changes", "status", "words"),
    [
        ({}, "pass", "default: nginx"),
        ({"ingress_classes": (TRAEFIK,)}, "warn", "none is the default"),
        ({"ingress_classes": ()}, "fail", "no ingress controller"),
        ({"ingress": NOT_INSTALLED}, "fail", "no IngressClass API"),
        (
            {"ingress": forbidden("list ingressclasses.networking.k8s.io")},
            "unknown",
            "lacks permission to list ingressclasses.networking.k8s.io",
        ),
        ({"ingress": ReadOutcome("error", "unreachable: timed out")}, "unknown", "timed out"),
    ],
)
def test_ingress_controller(changes: dict[str, Any], status: str, words: str) -> None:
    verdict = ingress_controller.evaluate(cluster_view(platform=healthy_platform(**changes)))
    assert verdict.status == status, verdict.reason
    assert words in verdict.reason


LOCAL = StorageClassInfo("local-path", "rancher.io/local-path", True)
CEPH = StorageClassInfo("ceph-rbd", "rbd.csi.ceph.com", True)
NFS = StorageClassInfo("nfs-client", "cluster.local/nfs", False)


@pytest.mark.parametrize(
    ("changes", "status", "words"),
    [
        ({}, "pass", "default StorageClass local-path (rancher.io/local-path)"),
        ({"storage_classes": (LOCAL, CEPH)}, "warn", "2 StorageClasses are marked default"),
        ({"storage_classes": (NFS,)}, "fail", "no default StorageClass among 1"),
        ({"storage_classes": ()}, "fail", "no StorageClass at all"),
        (
            {"storage": forbidden("list storageclasses.storage.k8s.io")},
            "unknown",
            "list storageclasses.storage.k8s.io",
        ),
    ],
)
def test_default_storage_class(changes: dict[str, Any], status: str, words: str) -> None:
    verdict = default_storage_class.evaluate(cluster_view(platform=healthy_platform(**changes)))
    assert verdict.status == status, verdict.reason
    assert words in verdict.reason


CRD_FORBIDDEN = forbidden(
    "get customresourcedefinitions.apiextensions.k8s.io 'prometheuses.monitoring.coreos.com'"
)


@pytest.mark.parametrize(
    ("changes", "status", "words"),
    [
        ({}, "pass", "1 Prometheus object: monitoring/kube-prometheus-stack-prometheus"),
        ({"prometheus_objects": ()}, "warn", "no Prometheus object"),
        (
            {"prometheus_crd": NOT_INSTALLED, "prometheus": NOT_INSTALLED},
            "fail",
            "no Prometheus Operator",
        ),
        # Without CRD access, a 404 on the list still says the kind is missing...
        ({"prometheus_crd": CRD_FORBIDDEN, "prometheus": NOT_INSTALLED}, "fail", "missing"),
        # ...and a good list says it exists.
        ({"prometheus_crd": CRD_FORBIDDEN}, "pass", "1 Prometheus object"),
        (
            {"prometheus_crd": CRD_FORBIDDEN, "prometheus": forbidden("list prometheuses")},
            "unknown",
            "get customresourcedefinitions",
        ),
        ({"prometheus": forbidden("list prometheuses.monitoring.coreos.com")}, "unknown", "list"),
    ],
)
def test_prometheus_stack(changes: dict[str, Any], status: str, words: str) -> None:
    verdict = prometheus_stack.evaluate(cluster_view(platform=healthy_platform(**changes)))
    assert verdict.status == status, verdict.reason
    assert words in verdict.reason


# --- gpu_operator ----------------------------------------------------------------------------


def operator(version: str, source: str = "app.kubernetes.io/version") -> OperatorDeploymentInfo:
    return OperatorDeploymentInfo(
        "gpu-operator",
        "gpu-operator",
        version,
        source,
        f"nvcr.io/nvidia/gpu-operator:v{version}",
        1,
        1,
    )


NOT_READY = (ClusterPolicyInfo("cluster-policy", "notReady", "gpu-operator", "25.10.0"),)
DEPLOYMENT_FORBIDDEN = forbidden("get deployments.apps 'gpu-operator' in namespace 'gpu-operator'")


@pytest.mark.parametrize(
    ("profile", "changes", "status", "words"),
    [
        (P225, {}, "pass", "ClusterPolicy cluster-policy ready, version 25.10.0"),
        (P225, {"operator_deployment": operator("26.3.1")}, "pass", "26.3.1"),
        (P225, {"operator_deployment": operator("25.3.4")}, "warn", "25.3.4"),
        (P225, {"operator_deployment": operator("26.7.1")}, "warn", "outside 25.10–26.3"),
        (P225, {"cluster_policies": NOT_READY}, "warn", "cluster-policy is notReady"),
        (
            P225,
            {"operator_deployment": operator(""), "cluster_policies": ()},
            "warn",
            "version unknown",
        ),
        (
            P225,
            {"cluster_policy": NOT_INSTALLED, "operator": NOT_INSTALLED},
            "fail",
            "no GPU Operator",
        ),
        (
            P225,
            {"cluster_policies": (), "operator": NOT_INSTALLED, "operator_deployment": None},
            "fail",
            "no ClusterPolicy object",
        ),
        (
            P225,
            {
                "cluster_policy": forbidden("list clusterpolicies.nvidia.com"),
                "operator": DEPLOYMENT_FORBIDDEN,
            },
            "unknown",
            "list clusterpolicies.nvidia.com",
        ),
        # The Deployment may not be read: the ClusterPolicy's chart label gives the version.
        (
            P225,
            {"operator": DEPLOYMENT_FORBIDDEN, "operator_deployment": None},
            "pass",
            "25.10.0 (ClusterPolicy label",
        ),
        (P218, {"operator_deployment": operator("23.9.2")}, "pass", "within 22.9–23.9"),
        (P218, {}, "warn", "outside 22.9–23.9"),
        (P213, {"operator_deployment": operator("1.10.1")}, "warn", "excluded (1.10)"),
        (P213, {"operator_deployment": operator("1.9.1")}, "pass", "within 1.9+"),
        (P213, {"operator_deployment": operator("22.9.0")}, "pass", "22.9.0"),
    ],
)
def test_gpu_operator(profile: Profile, changes: dict[str, Any], status: str, words: str) -> None:
    verdict = gpu_operator.evaluate(cluster_view(profile, platform=healthy_platform(**changes)))
    assert verdict.status == status, verdict.reason
    assert words in verdict.reason


def test_gpu_nodes_without_gfd_labels_are_named() -> None:
    partial = tuple(kv for kv in GFD if kv[0] != "nvidia.com/gpu.product")
    nodes = (*HEALTHY_NODES[:3], gpu("dgx-1"), gpu("dgx-2", partial), gpu("dgx-3", ()))
    verdict = gpu_operator.evaluate(cluster_view(nodes=nodes))
    assert verdict.status == "warn"
    assert "GFD labels missing on 2 GPU nodes" in verdict.reason
    assert "dgx-2 (nvidia.com/gpu.product)" in verdict.reason
    assert "dgx-3 (" in verdict.reason and "dgx-1" not in verdict.reason


def test_renamed_gfd_labels_are_accepted() -> None:
    renamed = tuple(
        (k.replace("cuda.driver.rev", "cuda.driver-version.revision"), v) for k, v in GFD
    )
    verdict = gpu_operator.evaluate(cluster_view(nodes=(*HEALTHY_NODES[:3], gpu("g", renamed))))
    assert verdict.status == "pass", verdict.reason


# --- standalone, and readiness by the profile's phases ----------------------------------------


@pytest.mark.parametrize(
    "requirement",
    [
        "kubernetes_version",
        "system_nodes",
        "gpu_operator",
        "ingress_controller",
        "prometheus_stack",
        "default_storage_class",
        "container_runtime",
    ],
)
def test_kubernetes_backed_rules_are_unknown_standalone(requirement: str) -> None:
    standalone = dataclasses.replace(view(), profile=P225)
    verdict = RULES[requirement](standalone)
    assert verdict.status == "unknown"
    assert "standalone" in verdict.reason


def test_platform_rules_without_platform_reads_are_unknown() -> None:
    kube = KubeFacts(server_version="v1.34.2", nodes=HEALTHY_NODES, error=None, fetched_at=NOW)
    unread = dataclasses.replace(view(kube=kube), profile=P225)
    for rule in (gpu_operator, ingress_controller, prometheus_stack, default_storage_class):
        verdict = rule.evaluate(unread)
        assert verdict.status == "unknown" and "not read" in verdict.reason


def test_cluster_ready_follows_the_profile_phases() -> None:
    broken = healthy_platform(storage_classes=(NFS,))
    verdicts = [
        v
        for v in evaluate_all(cluster_view(platform=broken))
        if v.requirement in ("default_storage_class", "kubernetes_version")
    ]
    ready = cluster_ready(verdicts, P225.phase_requirements())
    # default_storage_class fails and is needed for install only.
    assert ready == {"install": False, "runtime": True}


# --- clock_sync ------------------------------------------------------------------------------


def clocked(name: str, *, skew: float = 0.05, synced: bool | None = True) -> Any:
    message = report(name)
    if synced is not None:
        message.clock.available = True
        message.clock.synchronised = synced
        message.clock.state = "ok" if synced else "error"
    return dataclasses.replace(entry(message), clock_skew_seconds=skew)


@pytest.mark.parametrize(
    ("entries", "status", "words"),
    [
        ((clocked("a"), clocked("b", skew=-0.4)), "pass", "2 nodes NTP-synchronised, within 0.4 s"),
        ((clocked("a"), clocked("b", skew=75.0)), "fail", "b (+75.0 s)"),
        ((clocked("a", skew=-61.0, synced=False),), "fail", "more than 60 s"),
        ((clocked("a"), clocked("b", synced=False)), "warn", "1 node not NTP-synchronised"),
        ((clocked("a"), clocked("b", synced=None)), "unknown", "report no kernel NTP state: b"),
        ((), "unknown", "no agent"),
    ],
)
def test_clock_sync(entries: tuple[Any, ...], status: str, words: str) -> None:
    verdict = clock_sync.evaluate(cluster_view(P225, reports=entries))
    assert verdict.status == status, verdict.reason
    assert words in verdict.reason


def test_clock_sync_bound_comes_from_the_profile() -> None:
    assert P225.clock_sync is not None
    strict = P225.replace(clock_sync=P225.clock_sync.replace(max_skew=5.0))
    verdict = clock_sync.evaluate(cluster_view(strict, reports=(clocked("a", skew=6.0),)))
    assert verdict.status == "fail" and "more than 5 s" in verdict.reason


# --- cluster_domain_tls ------------------------------------------------------------------------


def probed(name: str, *, reason: str = "", not_after_days: float | None = 80.0) -> Any:
    from preflight.plan import CLUSTER_DOMAIN_TARGET

    down = {CLUSTER_DOMAIN_TARGET: reason} if reason else {}
    message = report(name, targets=(CLUSTER_DOMAIN_TARGET,), down=down)
    if not_after_days is not None and not reason:
        cert = message.egress[0].certificate
        cert.subject = "CN=runai.corp.example"
        cert.not_after.FromNanoseconds(int((NOW + not_after_days * 86400) * 1e9))
    return entry(message)


def domain_view(*entries: Any, domain: str = "runai.corp.example") -> Evidence:
    return dataclasses.replace(cluster_view(reports=entries), cluster_domain=domain)


@pytest.mark.parametrize(
    ("entries", "status", "words"),
    [
        ((probed("sys-1"), probed("sys-2")), "pass", "to 2 system nodes, 80 days left"),
        ((probed("sys-1"), probed("sys-2", not_after_days=3.5)), "warn", "expires in 3.5 days"),
        ((probed("sys-1", reason="tls_untrusted"),), "fail", "sys-1: untrusted certificate"),
        ((probed("sys-1", reason="tls_hostname_mismatch"),), "fail", "certificate for another"),
        ((probed("sys-1", reason="tls_expired"),), "fail", "expired certificate"),
        ((probed("sys-1", reason="dns_nxdomain"),), "fail", "unreachable (dns_nxdomain)"),
        ((probed("sys-1"), entry(report("sys-2", targets=()))), "unknown", "did not probe"),
        # GPU workers are not system nodes: their answer does not count.
        ((probed("sys-1"), probed("dgx-1", reason="tls_untrusted")), "pass", "1 system node"),
    ],
)
def test_cluster_domain_tls(entries: tuple[Any, ...], status: str, words: str) -> None:
    verdict = cluster_domain_tls.evaluate(domain_view(*entries))
    assert verdict.status == status, verdict.reason
    assert words in verdict.reason


def test_cluster_domain_tls_needs_the_setting() -> None:
    verdict = cluster_domain_tls.evaluate(domain_view(probed("sys-1"), domain=""))
    assert verdict.status == "unknown" and "cluster_domain" in verdict.reason
