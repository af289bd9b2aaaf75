"""The deployment's trust wiring: every path the configs name is what the pods mount.

Rendered with the real `kubectl kustomize` (helpers from tests/test_deploy.py): the
collector's TLS pair comes from Secret preflight-collector-tls, the agent's token is a
projected ServiceAccount token for audience preflight-collector, the agent trusts the
CA from ConfigMap preflight-collector-ca and never mounts the collector's Secret, and
overlay cert-manager issues a certificate for exactly the name agents check.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml

from preflight.configfile import parse_duration
from tests.support.kustomize import OVERLAYS, configmap, find, one, render

pytestmark = pytest.mark.skipif(not OVERLAYS, reason="no overlays")


def mounted(pod: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    """The volume a file path lies in, and the file's path inside that volume."""
    container = pod["containers"][0]
    for mount in container["volumeMounts"]:
        base = PurePosixPath(mount["mountPath"])
        if PurePosixPath(path).is_relative_to(base):
            volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            assert mount.get("readOnly") is True, f"{path}: its mount must be read-only"
            return volume, str(PurePosixPath(path).relative_to(base))
    raise AssertionError(f"{path} is on no volume")


def config_of(objs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    cm = configmap(objs, f"preflight-{component}-config")
    data: dict[str, Any] = yaml.safe_load(cm["data"][f"{component}.yaml"])
    return data


@pytest.mark.parametrize("name", OVERLAYS)
def test_collector_serves_tls_from_its_secret_and_authenticates_agents(name: str) -> None:
    objs = render(name)
    config = config_of(objs, "collector")
    assert config["auth"]["mode"] == "kubernetes"
    assert config["auth"]["audience"] == "preflight-collector"
    pod = one(objs, "Deployment", "preflight-collector")["spec"]["template"]["spec"]
    for key in ("cert_file", "key_file"):
        volume, inside = mounted(pod, config["tls"][key])
        assert volume["secret"]["secretName"] == "preflight-collector-tls"
        assert {"key": inside, "path": inside} in volume["secret"]["items"]


AGENT_DAEMONSETS = ("preflight-agent", "preflight-agent-gpu")


@pytest.mark.parametrize("daemonset", AGENT_DAEMONSETS)
@pytest.mark.parametrize("name", OVERLAYS)
def test_agent_token_is_projected_for_the_collector_and_ca_is_public(
    name: str, daemonset: str
) -> None:
    objs = render(name)
    config = config_of(objs, "agent")["collector"]
    pod = one(objs, "DaemonSet", daemonset)["spec"]["template"]["spec"]
    volume, inside = mounted(pod, config["token_file"])
    [source] = volume["projected"]["sources"]
    token = source["serviceAccountToken"]
    assert token["path"] == inside
    assert token["audience"] == config_of(objs, "collector")["auth"]["audience"]
    # Short-lived, rotated by the kubelet (at 80 % of its life); at least 10 min.
    assert 600 <= token["expirationSeconds"] <= 24 * 3600
    ca_volume, ca_inside = mounted(pod, config["tls"]["ca_file"])
    assert ca_volume["configMap"]["name"] == "preflight-collector-ca"
    assert ca_volume["configMap"]["items"] == [{"key": "ca.crt", "path": ca_inside}]
    # The collector's private key never reaches a node through an agent pod.
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert "preflight-collector-tls" not in secrets
    service = one(objs, "Service", "preflight-collector")
    namespace = service["metadata"]["namespace"]
    assert config["tls"]["server_name"] == f"preflight-collector.{namespace}.svc"
    sa = config_of(objs, "collector")["auth"]["service_account"]
    assert sa == f"{namespace}/{pod['serviceAccountName']}"


def test_cert_manager_overlay_issues_the_name_agents_check() -> None:
    objs = render("overlays/cert-manager")
    agent = config_of(objs, "agent")["collector"]
    certificates = {c["metadata"]["name"]: c for c in find(objs, "Certificate")}
    serving = certificates["preflight-collector"]["spec"]
    assert serving["secretName"] == "preflight-collector-tls"
    assert agent["tls"]["server_name"] in serving["dnsNames"]
    assert serving["usages"] == ["server auth"]
    # Renewed well before expiry; the collector picks the new pair up without a restart.
    assert parse_duration(serving["renewBefore"]) < parse_duration(serving["duration"]) / 2
    issuers = {i["metadata"]["name"]: i["spec"] for i in find(objs, "Issuer")}
    assert serving["issuerRef"] == {"name": "preflight-ca", "kind": "Issuer"}
    ca = certificates["preflight-ca"]["spec"]
    assert ca["isCA"] is True and issuers["preflight-ca"] == {
        "ca": {"secretName": ca["secretName"]}
    }
    assert issuers[ca["issuerRef"]["name"]] == {"selfSigned": {}}
    for obj in [*certificates.values(), *find(objs, "Issuer")]:
        assert obj["metadata"]["namespace"] == "preflight"
