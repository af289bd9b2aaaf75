"""The Kubernetes deployment: every kustomize overlay rendered, validated and policy-checked.

Renders deploy/kustomize/base and every overlay with the real `kubectl kustomize`,
validates the output strictly against the Kubernetes OpenAPI schemas shipped with
kubernetes-validate (oldest and newest version), and checks the properties an
operator relies on: least privilege, resource bounds, tolerations, the host root,
network policies, and that every embedded config passes the real `--check-config`.
ServiceMonitor and PrometheusRule are CRDs the validator has no schema for; they
are checked structurally here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kustomize import (
    AGENT_DAEMONSETS,
    DEPLOY,
    NEEDS_KUBECTL,
    OVERLAYS,
    REPO,
    agent_container,
    configmap,
    one,
    render,
    render_text,
)

pytestmark = NEEDS_KUBECTL

VENV_BIN = Path(sys.executable).parent
NAMESPACE = "preflight"
AGENT = {"app.kubernetes.io/name": "preflight", "app.kubernetes.io/component": "agent"}
COLLECTOR = {"app.kubernetes.io/name": "preflight", "app.kubernetes.io/component": "collector"}

# Every (apiVersion, kind) the manifests may use, with the Kubernetes release that
# first served it. All must be <= 1.17 and still served by the newest schema set.
API_SINCE = {
    ("v1", "Namespace"): "1.0",
    ("v1", "ServiceAccount"): "1.0",
    ("v1", "ConfigMap"): "1.2",
    ("v1", "Secret"): "1.0",
    ("v1", "Service"): "1.0",
    ("apps/v1", "DaemonSet"): "1.9",
    ("apps/v1", "Deployment"): "1.9",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "1.8",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "1.8",
    ("rbac.authorization.k8s.io/v1", "Role"): "1.8",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "1.8",
    ("networking.k8s.io/v1", "NetworkPolicy"): "1.7",
    ("scheduling.k8s.io/v1", "PriorityClass"): "1.14",
    # The one exception, served from 1.21 (v1beta1 is gone from 1.25): overlay pre-1.21
    # drops it (test_pdb_keeps_one_collector_and_pre_1_21_drops_it).
    ("policy/v1", "PodDisruptionBudget"): "1.21",
}
NEWER_THAN_1_17 = {("policy/v1", "PodDisruptionBudget")}
CRDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    # Overlay cert-manager only.
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass"}
# Taints the agents must tolerate: control plane (old and new names), GPU nodes,
# and the node-lifecycle NoExecute taints that would otherwise evict them.
TAINTS = [
    ("node-role.kubernetes.io/control-plane", "", "NoSchedule"),
    ("node-role.kubernetes.io/master", "", "NoSchedule"),
    ("nvidia.com/gpu", "present", "NoSchedule"),
    ("dedicated", "gpu", "NoExecute"),
    ("node.kubernetes.io/unreachable", "", "NoExecute"),
    ("node.kubernetes.io/not-ready", "", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "", "NoSchedule"),
]


def workloads(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] in {"DaemonSet", "Deployment"}]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def agent_pods(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pod spec of each agent DaemonSet; both must exist."""
    return [one(objs, "DaemonSet", name)["spec"]["template"]["spec"] for name in AGENT_DAEMONSETS]


def arg_value(args: list[str], flag: str) -> str:
    assert flag in args, f"{flag} missing from {args}"
    return args[args.index(flag) + 1]


def tolerates(tolerations: list[dict[str, Any]], key: str, value: str, effect: str) -> bool:
    """Kubernetes' toleration matching (v1.Toleration.ToleratesTaint)."""
    for t in tolerations:
        if t.get("effect") and t["effect"] != effect:
            continue
        if t.get("key") and t["key"] != key:
            continue
        operator = t.get("operator", "Equal")
        if operator == "Exists" or (operator == "Equal" and t.get("value", "") == value):
            return True
    return False


def test_tolerates_helper_can_refuse() -> None:
    assert not tolerates([{"key": "a", "operator": "Exists"}], "b", "", "NoSchedule")
    assert not tolerates([{"operator": "Exists", "effect": "NoSchedule"}], "a", "", "NoExecute")
    assert tolerates([{"operator": "Exists"}], "a", "x", "NoExecute")


@pytest.mark.parametrize("name", OVERLAYS)
def test_renders_into_one_namespace(name: str) -> None:
    objs = render(name)
    kinds = {o["kind"] for o in objs}
    assert {"DaemonSet", "Deployment", "Service", "NetworkPolicy", "ConfigMap"} <= kinds
    for o in objs:
        if o["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in o["metadata"], o["metadata"]
        else:
            assert o["metadata"].get("namespace") == NAMESPACE, (o["kind"], o["metadata"])
    one(objs, "Namespace", NAMESPACE)


@pytest.mark.parametrize("name", OVERLAYS)
def test_validates_strictly_for_oldest_and_newest_kubernetes(name: str, tmp_path: Path) -> None:
    from kubernetes_validate.utils import all_versions  # type: ignore[import-untyped]

    versions = all_versions()
    oldest, newest = versions[0], versions[-1]
    assert oldest != newest
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(render_text(name))
    result = subprocess.run(
        [
            VENV_BIN / "kubernetes-validate",
            "--strict",
            "--quiet",
            "-k",
            oldest,
            "-k",
            newest,
            manifest,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    errors = [line for line in lines if not line.startswith("WARN")]
    assert result.returncode == 0 and not errors, "\n".join(lines) + result.stderr
    # A schema is missing only for the CRDs: a typo in a built-in apiVersion
    # would otherwise pass as a mere warning.
    crd_kinds = {kind for _, kind in CRDS}
    for line in lines:
        assert any(f"kind {kind} with api version" in line for kind in crd_kinds), line


@pytest.mark.parametrize("name", OVERLAYS)
def test_api_versions_served_since_1_17(name: str) -> None:
    for o in render(name):
        key = (o["apiVersion"], o["kind"])
        if key in CRDS:
            continue
        assert key in API_SINCE, f"{key} not in the table of API versions served since 1.17"
        if key in NEWER_THAN_1_17 and name != "overlays/pre-1.21":
            continue
        major, minor = (int(x) for x in API_SINCE[key].split("."))
        assert (major, minor) <= (1, 17), key


@pytest.mark.parametrize("name", OVERLAYS)
def test_containers_least_privilege(name: str) -> None:
    objs = render(name)
    assert {w["kind"] for w in workloads(objs)} == {"DaemonSet", "Deployment"}
    for workload in workloads(objs):
        pod = workload["spec"]["template"]["spec"]
        where = f"{name}: {workload['kind']}/{workload['metadata']['name']}"
        assert not pod.get("hostPID") and not pod.get("hostIPC"), where
        if pod.get("hostNetwork"):
            assert name == "overlays/host-network", f"{where}: host network not asked for"
        pod_sc = pod.get("securityContext", {})
        for c in containers(workload):
            sc = c.get("securityContext", {})
            assert sc.get("privileged", False) is False, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
            assert isinstance(uid, int) and uid > 0, f"{where}: numeric non-root uid"
            resources = c.get("resources", {})
            for kind in ("requests", "limits"):
                assert set(resources.get(kind, {})) >= {"cpu", "memory"}, f"{where}: {kind}"


def _quantity(text: str | int) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    text = str(text)
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    return float(text)


def test_requests_do_not_exceed_limits() -> None:
    for workload in workloads(render("base")):
        for c in containers(workload):
            for resource in ("cpu", "memory"):
                request = _quantity(c["resources"]["requests"][resource])
                limit = _quantity(c["resources"]["limits"][resource])
                assert 0 < request <= limit, (workload["metadata"]["name"], resource)


@pytest.mark.parametrize("name", OVERLAYS)
def test_rbac_exactly_as_needed(name: str) -> None:
    objs = render(name)
    # Reading pods (a token's node before Kubernetes 1.30) only in the agents' namespace.
    namespaced = one(objs, "Role")
    assert namespaced["metadata"]["name"] == "preflight-collector"
    assert namespaced["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    role_binding = one(objs, "RoleBinding")
    assert role_binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "preflight-collector",
    }
    assert role_binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "preflight-collector", "namespace": NAMESPACE}
    ]
    role = one(objs, "ClusterRole")
    assert role["metadata"]["name"] == "preflight-collector"
    rules = {
        (group, resource, verb, tuple(rule.get("resourceNames", ())))
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    # The add-on reads of collector/kube/platform.py: lists, and gets of named objects only.
    assert rules == {
        ("", "nodes", "get", ()),
        ("", "nodes", "list", ()),
        ("", "nodes", "watch", ()),
        ("authentication.k8s.io", "tokenreviews", "create", ()),
        ("networking.k8s.io", "ingressclasses", "list", ()),
        ("storage.k8s.io", "storageclasses", "list", ()),
        ("nvidia.com", "clusterpolicies", "list", ()),
        ("monitoring.coreos.com", "prometheuses", "list", ()),
        (
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "get",
            ("prometheuses.monitoring.coreos.com",),
        ),
        ("config.openshift.io", "clusterversions", "get", ("version",)),
        ("apps", "deployments", "get", ("gpu-operator",)),
    }
    assert all(
        set(rule) <= {"apiGroups", "resources", "resourceNames", "verbs"} for rule in role["rules"]
    )
    assert not any("secrets" in rule["resources"] for rule in role["rules"])
    binding = one(objs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "preflight-collector",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "preflight-collector", "namespace": NAMESPACE}
    ]
    collector_pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert collector_pod["serviceAccountName"] == "preflight-collector"
    # The agent has no API access at all: its own account, and no token mounted.
    for agent_pod in agent_pods(objs):
        assert agent_pod["serviceAccountName"] == "preflight-agent"
        assert agent_pod["automountServiceAccountToken"] is False
        # Its one token is for the collector alone: the API server refuses that audience.
        sources = [
            source
            for volume in agent_pod["volumes"]
            for source in volume.get("projected", {}).get("sources", [])
            if "serviceAccountToken" in source
        ]
        assert [s["serviceAccountToken"]["audience"] for s in sources] == ["preflight-collector"]
    assert one(objs, "ServiceAccount", "preflight-agent")["automountServiceAccountToken"] is False


@pytest.mark.parametrize("name", OVERLAYS)
def test_daemonset_runs_on_every_node_with_the_host_root(name: str) -> None:
    objs = render(name)
    # Which nodes each DaemonSet may use is tests/deploy/test_agent_gpu_split.py's
    # business; here: each tolerates every taint and reads the host root.
    for ds_name, pod in zip(AGENT_DAEMONSETS, agent_pods(objs), strict=True):
        for key, value, effect in TAINTS:
            assert tolerates(pod["tolerations"], key, value, effect), (ds_name, key, effect)
        assert {"operator": "Exists"} in pod["tolerations"], "tolerate every taint"
        assert "nodeSelector" not in pod, "node affinity alone splits the agents"

        priority = one(objs, "PriorityClass", pod["priorityClassName"])
        assert 0 < priority["value"] < 2_000_000_000
        assert priority.get("globalDefault", False) is False

        agent = agent_container(objs, ds_name)
        env = {e["name"]: e for e in agent["env"]}
        assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
        assert arg_value(agent["args"], "--host-root") == "/host"
        volumes = {v["name"]: v for v in pod["volumes"]}
        host = [m for m in agent["volumeMounts"] if m["mountPath"] == "/host"]
        assert len(host) == 1
        assert host[0]["readOnly"] is True
        assert host[0]["mountPropagation"] == "HostToContainer"
        assert volumes[host[0]["name"]]["hostPath"]["path"] == "/"
        assert agent.get("ports") is None, "agents listen on no port"


@pytest.mark.parametrize("name", OVERLAYS)
def test_shared_volumes_mounted_writable_where_the_agent_writes(name: str) -> None:
    objs = render(name)
    config = yaml.safe_load(configmap(objs, "preflight-agent-config")["data"]["agent.yaml"])
    shared = config["mounts"]["volumes"]
    assert shared, "the base config names the shared volume"
    for pod in agent_pods(objs):
        mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        for volume in shared:
            mount = mounts.get("/host" + volume["path"])
            assert mount is not None, f"{volume['path']} is not mounted under /host"
            assert volumes[mount["name"]]["hostPath"]["path"] == volume["path"]
            assert mount.get("mountPropagation") == "HostToContainer"
            assert mount.get("readOnly", False) is (not volume["write_expected"])


@pytest.mark.parametrize("name", OVERLAYS)
def test_collector_service_probes_and_agent_address(name: str) -> None:
    objs = render(name)
    deployment = one(objs, "Deployment", "preflight-collector")
    pod = deployment["spec"]["template"]["spec"]
    collector = pod["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in collector["ports"]}
    assert ports == {"http": 9750, "grpc": 9751}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = collector[probe]["httpGet"]
        assert get["path"] == path
        assert ports.get(get["port"], get["port"]) == 9750

    service = one(objs, "Service", "preflight-collector")
    selector = service["spec"]["selector"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    for ds_name in AGENT_DAEMONSETS:
        agent_labels = one(objs, "DaemonSet", ds_name)["spec"]["template"]["metadata"]["labels"]
        assert not selector.items() <= agent_labels.items(), "the Service must not select agents"
    by_port = {
        p["port"]: ports.get(p["targetPort"], p["targetPort"]) for p in service["spec"]["ports"]
    }
    assert by_port == {9750: 9750, 9751: 9751}

    # The agent reaches the collectors through the headless Service (one address per
    # replica, every report to each), flag and config alike.
    headless = one(objs, "Service", "preflight-collector-agents")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == selector
    [grpc_port] = headless["spec"]["ports"]
    assert ports.get(grpc_port["targetPort"], grpc_port["targetPort"]) == 9751
    assert grpc_port["port"] == 9751
    address = f"{headless['metadata']['name']}.{headless['metadata']['namespace']}.svc:9751"
    for ds_name in AGENT_DAEMONSETS:
        assert arg_value(agent_container(objs, ds_name)["args"], "--collector") == address
    config = yaml.safe_load(configmap(objs, "preflight-agent-config")["data"]["agent.yaml"])
    assert config["collector"]["address"] == address


@pytest.mark.parametrize("name", OVERLAYS)
def test_two_collector_replicas_on_different_nodes(name: str) -> None:
    objs = render(name)
    spec = one(objs, "Deployment", "preflight-collector")["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]
    [term] = pod["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    selector = term["podAffinityTerm"]["labelSelector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    # The ServiceMonitor scrapes each replica once: only one Service matches it.
    monitors = [o for o in objs if o["kind"] == "ServiceMonitor"]
    for monitor in monitors:
        wanted = monitor["spec"]["selector"]["matchLabels"].items()
        matching = [
            o["metadata"]["name"]
            for o in objs
            if o["kind"] == "Service" and wanted <= o["metadata"]["labels"].items()
        ]
        assert matching == ["preflight-collector"]


@pytest.mark.parametrize("name", OVERLAYS)
def test_pdb_keeps_one_collector_and_pre_1_21_drops_it(name: str) -> None:
    objs = render(name)
    pdbs = [o for o in objs if o["kind"] == "PodDisruptionBudget"]
    if name == "overlays/pre-1.21":
        assert pdbs == []
        return
    [pdb] = pdbs
    assert pdb["spec"]["minAvailable"] == 1
    labels = one(objs, "Deployment", "preflight-collector")["spec"]["template"]["metadata"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels["labels"].items()


def _port_set(rule: dict[str, Any]) -> set[tuple[str, int]]:
    return {(p.get("protocol", "TCP"), p["port"]) for p in rule.get("ports", [])}


@pytest.mark.parametrize("name", OVERLAYS)
def test_network_policies(name: str) -> None:
    objs = render(name)
    agent = one(objs, "NetworkPolicy", "preflight-agent")["spec"]
    assert agent["podSelector"]["matchLabels"] == AGENT
    assert set(agent["policyTypes"]) == {"Ingress", "Egress"}
    assert agent.get("ingress", []) == [], "nothing may connect to an agent"
    open_ports: set[tuple[str, int]] = set()
    for rule in agent["egress"]:
        assert rule.get("ports"), f"egress rule without ports: {rule}"
        if "to" in rule:
            assert rule["to"] == [{"podSelector": {"matchLabels": COLLECTOR}}]
            assert _port_set(rule) == {("TCP", 9751)}
        else:
            open_ports |= _port_set(rule)
    expected = {("UDP", 53), ("TCP", 53), ("TCP", 443)}
    if name == "overlays/proxy":
        expected.add(("TCP", 3128))
    assert open_ports == expected

    collector = one(objs, "NetworkPolicy", "preflight-collector")["spec"]
    assert collector["podSelector"]["matchLabels"] == COLLECTOR
    assert "Ingress" in collector["policyTypes"]
    by_port: dict[int, list[dict[str, Any]]] = {}
    for rule in collector["ingress"]:
        assert rule.get("from"), f"ingress open to everyone: {rule}"
        for _, port in _port_set(rule):
            by_port.setdefault(port, []).extend(rule["from"])
    assert set(by_port) == {9750, 9751}
    assert by_port[9751] == [{"podSelector": {"matchLabels": AGENT}}]
    assert {
        "namespaceSelector": {},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    } in by_port[9750]


@pytest.mark.parametrize("name", OVERLAYS)
def test_configmaps_generated_from_config_files_pass_check_config(
    name: str, tmp_path: Path
) -> None:
    objs = render(name)
    for component, mount_name in (
        ("agent", "preflight-agent"),
        ("collector", "preflight-collector"),
    ):
        cm = configmap(objs, f"preflight-{component}-config")
        assert set(cm["data"]) == {f"{component}.yaml"}
        text = cm["data"][f"{component}.yaml"]
        if name != "overlays/corporate-ca" or component == "collector":
            assert text == (DEPLOY / "config" / f"{component}.yaml").read_text()
        pods = (
            agent_pods(objs)
            if component == "agent"
            else [one(objs, "Deployment", mount_name)["spec"]["template"]["spec"]]
        )
        for pod in pods:
            config_volume = {"name": "config", "configMap": {"name": cm["metadata"]["name"]}}
            assert config_volume in pod["volumes"]
            assert (
                arg_value(pod["containers"][0]["args"], "--config")
                == f"/etc/preflight/{component}.yaml"
            )

        path = tmp_path / f"{component}.yaml"
        path.write_text(text)
        result = subprocess.run(
            [str(VENV_BIN / f"preflight-{component}"), "--check-config", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"{name} {component}: {result.stdout}{result.stderr}"


def test_check_config_rejects_a_broken_config(tmp_path: Path) -> None:
    """The --check-config gate above can fail: an unknown key exits 2 naming it."""
    for component in ("agent", "collector"):
        path = tmp_path / f"{component}.yaml"
        path.write_text((DEPLOY / "config" / f"{component}.yaml").read_text() + "bogus_key: 1\n")
        result = subprocess.run(
            [str(VENV_BIN / f"preflight-{component}"), "--check-config", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result
        assert "bogus_key" in result.stdout + result.stderr


def test_corporate_ca_overlay_config_is_the_base_plus_ca_file() -> None:
    base = yaml.safe_load((DEPLOY / "config" / "agent.yaml").read_text())
    objs = render("overlays/corporate-ca")
    overlay = yaml.safe_load(configmap(objs, "preflight-agent-config")["data"]["agent.yaml"])
    ca_file = overlay["egress"].pop("ca_file")
    assert overlay == base, "overlays/corporate-ca/agent.yaml drifted from deploy/config/agent.yaml"
    for pod in agent_pods(objs):
        volume_mounts = pod["containers"][0]["volumeMounts"]
        mount = next(m for m in volume_mounts if m["name"] == "corporate-ca")
        assert ca_file == mount["mountPath"] + "/ca.crt"
        assert mount["readOnly"] is True
        volume = next(v for v in pod["volumes"] if v["name"] == "corporate-ca")
        assert volume["secret"]["secretName"] == "preflight-corporate-ca"
        assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]


def test_proxy_overlay_sets_proxy_env_and_keeps_the_collector_direct() -> None:
    objs = render("overlays/proxy")
    proxy_cm = configmap(objs, "preflight-proxy")
    for ds_name in AGENT_DAEMONSETS:
        agent = agent_container(objs, ds_name)
        names = [e["name"] for e in agent["env"]]
        env = {e["name"]: e for e in agent["env"]}
        for var in ("HTTPS_PROXY", "https_proxy"):
            ref = env[var]["valueFrom"]["configMapKeyRef"]
            assert ref == {"name": proxy_cm["metadata"]["name"], "key": "HTTPS_PROXY"}
        address = arg_value(agent["args"], "--collector")
        host = address.rsplit(":", 1)[0]
        for var in ("NO_PROXY", "no_proxy"):
            entries = env[var]["value"].split(",")
            assert host in entries and "preflight-collector" in entries
            # Kubernetes expands $(VAR) only for variables defined earlier in the list.
            assert "$(SITE_NO_PROXY)" in entries
            assert names.index("SITE_NO_PROXY") < names.index(var)
    collector_env = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0].get(
        "env", []
    )
    assert not [e for e in collector_env if "proxy" in e["name"].lower()]


def test_host_network_overlay_keeps_cluster_dns() -> None:
    for pod in agent_pods(render("overlays/host-network")):
        assert pod["hostNetwork"] is True
        assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    for pod in agent_pods(render("base")):
        assert "hostNetwork" not in pod


def test_no_prometheus_operator_overlay_has_no_crds() -> None:
    objs = render("overlays/no-prometheus-operator")
    assert not [o for o in objs if o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert len(objs) == len(render("base")) - 2


SERVICEMONITOR_SPEC_KEYS = {"selector", "endpoints", "namespaceSelector", "jobLabel"}
ENDPOINT_KEYS = {"port", "path", "interval", "scrapeTimeout", "scheme"}
RULE_KEYS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}


@pytest.mark.parametrize("name", [n for n in OVERLAYS if n != "overlays/no-prometheus-operator"])
def test_crds_structurally_valid(name: str) -> None:
    """What the OpenAPI validator cannot check: the monitoring.coreos.com/v1 objects."""
    objs = render(name)
    monitor = one(objs, "ServiceMonitor", "preflight-collector")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert set(spec) <= SERVICEMONITOR_SPEC_KEYS
    service = one(objs, "Service", "preflight-collector")
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert spec["selector"]["matchLabels"] == service["spec"]["selector"]
    [endpoint] = spec["endpoints"]
    assert set(endpoint) <= ENDPOINT_KEYS
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert ports[endpoint["port"]] == 9750
    assert endpoint["path"] == "/metrics"

    rule = one(objs, "PrometheusRule", "preflight")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule["spec"]) == {"groups"}
    names = [g["name"] for g in rule["spec"]["groups"]]
    assert names and len(names) == len(set(names))
    for group in rule["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        assert group["rules"]
        for r in group["rules"]:
            assert set(r) <= RULE_KEYS, r
            assert ("alert" in r) != ("record" in r), r
            assert isinstance(r["expr"], str | int) and str(r["expr"]).strip()


def test_prometheusrule_equals_the_rules_file() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "preflight-rules.yaml").read_text())
    rendered = one(render("base"), "PrometheusRule", "preflight")
    assert rendered["spec"]["groups"] == rules["groups"]
    check = subprocess.run(
        [sys.executable, str(DEPLOY / "gen-prometheusrule.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr


def test_prometheusrule_generator_reports_a_bad_rules_file(tmp_path: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text("not_groups: []\n")
    result = subprocess.run(
        [
            sys.executable,
            str(DEPLOY / "gen-prometheusrule.py"),
            "--rules",
            str(bad),
            "--output",
            str(tmp_path / "out.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "groups" in result.stderr and str(bad) in result.stderr
    assert not (tmp_path / "out.yaml").exists()


def test_image_context_holds_exactly_what_the_dockerfile_copies(tmp_path: Path) -> None:
    context = tmp_path / "context"
    result = subprocess.run(
        [str(DEPLOY / "image-context.sh"), str(context)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert {p.name for p in context.iterdir()} == {
        "Dockerfile",
        "build-wheel.sh",
        "pyproject.toml",
        "README.md",
        "agent",
        "collector",
        "proto",
    }
    assert not list(context.rglob("__pycache__")) and not list(context.rglob("test*"))
    assert (context / "Dockerfile").read_text() == (DEPLOY / "Dockerfile").read_text()

    dockerfile = (DEPLOY / "Dockerfile").read_text()
    stages = [line for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2, "multi-stage: wheel build, then the runtime"
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in dockerfile
    assert "RUN sh build-wheel.sh /wheels" in dockerfile
    [user] = [line for line in dockerfile.splitlines() if line.startswith("USER ")]
    uid, gid = user.split()[1].split(":")
    assert int(uid) > 0 and int(gid) > 0, "numeric non-root user"
    # The runtime stage copies nothing from the context: only the built wheel.
    runtime = dockerfile[dockerfile.rindex("\nFROM ") :]
    assert "COPY" not in runtime.replace("COPY --from=build", "")
    assert "[gpu]" in runtime


def test_image_context_refuses_the_repository_itself() -> None:
    result = subprocess.run(
        [str(DEPLOY / "image-context.sh"), str(REPO)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert (REPO / "pyproject.toml").exists()
