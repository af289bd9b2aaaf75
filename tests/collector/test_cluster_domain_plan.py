"""The cluster domain in the probe plan: system nodes probe https://<cluster domain>/."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.config import load_config
from collector.kube.facts import KubeFacts
from collector.plan import PlanBook
from preflight.configfile import ConfigError
from preflight.plan import CLUSTER_DOMAIN_TARGET, plan_from_profile
from preflight.profile import load_profile
from preflight.v1 import report_pb2 as pb
from tests.support.builders import NOW, kube_node

PROFILE = load_profile("runai-2.25")


def test_only_system_nodes_probe_the_cluster_domain() -> None:
    system = plan_from_profile(PROFILE, system=True, cluster_domain="runai.corp.example")
    other = plan_from_profile(PROFILE, system=False, cluster_domain="runai.corp.example")
    (target,) = [t for t in system.egress_targets if t.name == CLUSTER_DOMAIN_TARGET]
    assert (target.host, target.port, target.path) == ("runai.corp.example", 443, "/")
    assert target.scope == pb.TARGET_SCOPE_SYSTEM and target.phase == "runtime"
    assert CLUSTER_DOMAIN_TARGET not in {t.name for t in other.egress_targets}
    # A new domain is a new plan version; no domain is the plan of before.
    plain = plan_from_profile(PROFILE, system=True)
    assert CLUSTER_DOMAIN_TARGET not in {t.name for t in plain.egress_targets}
    assert len({plain.version, system.version}) == 2


def test_the_plan_book_gives_labelled_system_nodes_the_domain() -> None:
    nodes = (
        kube_node("sys-1"),
        kube_node("gpu-1"),
    )
    import dataclasses

    nodes = (dataclasses.replace(nodes[0], roles=("runai-system",)), nodes[1])
    kube = KubeFacts(server_version="v1.34.2", nodes=nodes, error=None, fetched_at=NOW)
    book = PlanBook(PROFILE, lambda: kube, "runai.corp.example")
    assert CLUSTER_DOMAIN_TARGET in {t.name for t in book.for_node("sys-1").egress_targets}
    assert CLUSTER_DOMAIN_TARGET not in {t.name for t in book.for_node("gpu-1").egress_targets}


def test_a_bad_cluster_domain_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text("cluster_domain: 'https://runai.corp.example/'\n")
    with pytest.raises(ConfigError, match=r"cluster_domain") as error:
        load_config(path)
    assert str(path) in str(error.value)
    path.write_text("cluster_domain: runai.corp.example\n")
    assert load_config(path).cluster_domain == "runai.corp.example"
