"""Mirrors (collector setting `mirrors`): a profile target probed at an internal address,
its name, path and expectations kept; names checked against the profile (exit 2, key and
file named); shown as mirrored in /metrics, the JSON API and the status page."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from collector.config import (
    CollectorConfig,
    KubernetesConfig,
    LimitsConfig,
    ListenConfig,
    load_config,
)
from collector.kube.facts import KubeFacts
from collector.plan import PlanBook
from collector.published import Published
from collector.rules.egress_install import evaluate as egress_install
from collector.service import CollectorService
from collector.state import ClusterState
from collector.statuspage import render_status_page
from collector.web import node_detail
from preflight.configfile import ConfigError
from preflight.mirrors import Mirror, resolve_mirrors, split_mirror
from preflight.plan import plan_from_profile
from preflight.profile import load_profile
from preflight.v1 import report_pb2 as pb
from tests.support.builders import egress_up, entry, report, view
from tests.support.profiles import local_target, write_profile

BIN = Path(sys.executable).parent


def test_a_mirror_replaces_host_and_port_and_keeps_the_registry_semantics() -> None:
    profile = load_profile("runai-2.25")
    mirrors = resolve_mirrors(profile, {"nvcr.io": "registry.corp:5000"})
    assert mirrors == (Mirror("nvcr.io", "nvcr.io:443", "registry.corp", 5000),)
    plain = plan_from_profile(profile, system=False)
    mirrored = plan_from_profile(profile, system=False, mirrors=mirrors)
    (original,) = plain.egress_targets
    (target,) = mirrored.egress_targets
    assert (target.host, target.port) == ("registry.corp", 5000)
    # Everything that judges the answer stays the profile's: /v2/, 200 or 401 with the header.
    assert (target.name, target.path, target.phase, target.scope) == (
        original.name,
        "/v2/",
        "install",
        original.scope,
    )
    assert list(target.expect_status) == [200, 401]
    assert dict(target.require_header_for) == {401: "www-authenticate"}
    assert mirrored.version != plain.version


def test_a_system_target_is_mirrored_on_system_nodes_only() -> None:
    profile = load_profile("runai-2.25")
    mirrors = resolve_mirrors(profile, {"huggingface.co": "hf.corp", "nvcr.io": "10.1.2.3"})
    assert [m.target for m in mirrors] == ["nvcr.io", "huggingface.co"]  # profile order
    book = PlanBook(
        profile, lambda: KubeFacts(), mirrors={"huggingface.co": "hf.corp", "nvcr.io": "10.1.2.3"}
    )
    hosts = {t.name: (t.host, t.port) for t in book.for_node("any").egress_targets}
    assert hosts == {
        "nvcr.io": ("10.1.2.3", 443),
        "api.ngc.nvidia.com": ("api.ngc.nvidia.com", 443),
        "huggingface.co": ("hf.corp", 443),
    }
    assert book.mirrors == mirrors


def test_a_mirror_for_no_target_of_the_profile_is_an_error_naming_the_key() -> None:
    with pytest.raises(ConfigError) as raised:
        resolve_mirrors(load_profile("runai-2020"), {"nvcr.io": "registry.corp"})
    message = str(raised.value)
    assert "key 'mirrors.nvcr.io'" in message and "profile runai-2020" in message
    assert "gcr.io/run-ai-prod" in message  # the names it could have meant


@pytest.mark.parametrize(
    "value", ["https://registry.corp", "registry.corp/v2", "registry.corp:", "a b", ""]
)
def test_a_mirror_address_is_host_or_host_port(value: str) -> None:
    with pytest.raises(ValueError):
        split_mirror(value)


def test_a_port_beyond_65535_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        split_mirror("registry.corp:70000")


def run_check(tmp_path: Path, config: dict[str, object]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [str(BIN / "preflight-collector"), "--config", str(path), "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_exits_2_naming_file_and_key_for_an_unknown_target(tmp_path: Path) -> None:
    ok = run_check(
        tmp_path,
        {"profile": "runai-2020", "mirrors": {"gcr.io/run-ai-prod": "registry.corp:5000"}},
    )
    assert ok.returncode == 0, ok.stderr
    bad = run_check(tmp_path, {"profile": "runai-2020", "mirrors": {"nvcr.io": "registry.corp"}})
    assert bad.returncode == 2
    assert f"{tmp_path / 'collector.yaml'}: key 'mirrors.nvcr.io'" in bad.stderr


def test_a_malformed_mirror_address_names_the_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump({"mirrors": {"quay.io": "https://quay.corp/"}}))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert f"{path}: key 'mirrors.quay.io'" in str(raised.value)


def test_outputs_show_the_mirror_beside_the_target() -> None:
    state = ClusterState(LimitsConfig(), 30.0, 3, 600.0)
    report = pb.NodeReport(node_name="node-1", instance_id="i", sequence=1)
    report.egress.append(egress_up("quay.io"))
    report.egress.append(egress_up("hub.docker.com"))
    state.accept(report, now=1_800_000_000.0)
    view = Published(
        state=state.snapshot(1_800_000_000.0),
        verdicts=(),
        ready=(),
        mirrors=(Mirror("quay.io", "quay.io:443", "quay.corp", 8443),),
    )
    entry = view.state.nodes[0]
    targets = {
        t["target"]: t["mirror"] for t in node_detail(entry, 0.0, None, view.mirror_of)["targets"]
    }
    assert targets == {"quay.io": "quay.corp:8443", "hub.docker.com": None}
    page = render_status_page(view)
    assert page.count('class="mirror"') == 1 and "mirror quay.corp:8443" in page


def mirrored_service(tmp_path: Path, mirrors: dict[str, str]) -> CollectorService:
    profile = write_profile(
        tmp_path / "profile.yaml",
        [local_target("registry", 1001, path="/v2/"), local_target("charts", 1002)],
    )
    return CollectorService(
        CollectorConfig(
            listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"),
            profile=str(profile),
            kubernetes=KubernetesConfig(mode="none"),
            mirrors=mirrors,
        )
    )


def test_the_service_refuses_a_mirror_for_no_target(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("key 'mirrors.nvcr.io'")):
        mirrored_service(tmp_path, {"nvcr.io": "registry.corp"})


def test_a_reloaded_profile_without_a_mirrored_target_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = mirrored_service(tmp_path, {"registry": "registry.corp:5000"})
    plan = service.plans.for_node("n")
    assert [(t.name, t.host, t.port, t.path) for t in plan.egress_targets] == [
        ("registry", "registry.corp", 5000, "/v2/"),
        ("charts", "localhost", 1002, "/"),
    ]
    assert service.current_view().mirror_of == {"registry": "registry.corp:5000"}
    # The registry target renamed: the mirror would silently stop applying.
    write_profile(Path(service.config.profile), [local_target("charts-renamed", 1002)])
    assert service.reload_profile() is False
    assert "key 'mirrors.registry'" in caplog.text
    assert service.plans.for_node("n").version == plan.version
    assert service.plans.mirrors == service.current_view().mirrors
    service.authenticator.close()


def test_egress_reasons_name_the_mirror_that_was_probed() -> None:
    base = view(
        entry(report("node-1", down={"quay.io": "tls_hostname_mismatch"})),
        entry(report("node-2")),
    )
    mirrored = dataclasses.replace(base, mirror_of=(("quay.io", "quay.corp:8443"),))
    judged = egress_install(mirrored)
    assert judged.status == "fail"
    assert "node-1 → quay.io (mirror quay.corp:8443): tls_hostname_mismatch" in judged.reason
    assert judged.targets == ("quay.io",)  # the name stays the profile's
    assert "mirror" not in egress_install(base).reason
    healthy = dataclasses.replace(
        view(entry(report("node-1"))), mirror_of=(("quay.io", "quay.corp:8443"),)
    )
    passed = egress_install(healthy)
    assert passed.status == "pass" and "mirrored: quay.io (mirror quay.corp:8443)" in passed.reason
