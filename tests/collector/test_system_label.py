"""The system-node label has one source, the profile: it picks the nodes the probe plan gives
`system` targets and the nodes the system_nodes rule judges. A profile naming another label
changes both; a label that is not a node-role label is refused with its key and file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from collector.plan import PlanBook
from collector.rules.system_nodes import evaluate as system_nodes_rule
from preflight.configfile import ConfigError
from preflight.profile import load_profile
from tests.support.builders import cluster, entry, kube_node, report, view
from tests.support.profiles import local_target, write_profile

GB = 10**9


def profile_with_label(tmp_path: Path, label: str | None) -> Path:
    rule: dict[str, object] = {"minimum": 1, "cpus": 8, "memory_bytes": 16 * GB}
    if label is not None:
        rule["label"] = label
    return write_profile(
        tmp_path / "labelled.yaml",
        [
            local_target("registry", 1001, scope="all"),
            local_target("control", 1002, scope="system"),
        ],
        system_nodes=rule,
        requirements={"system_nodes": ["install"], "egress_install": ["install"]},
    )


def two_roles() -> tuple[object, ...]:
    runai = dataclasses.replace(kube_node("runai-1", cpu=16), roles=("runai-system",))
    infra = dataclasses.replace(kube_node("infra-1", cpu=16), roles=("infra",))
    return runai, infra, kube_node("worker-1", cpu=16)


@pytest.mark.parametrize(
    ("label", "system"),
    [
        (None, "runai-1"),  # the default: Run:ai's label
        ("node-role.kubernetes.io/runai-system", "runai-1"),
        ("node-role.kubernetes.io/infra", "infra-1"),
    ],
)
def test_the_profile_label_picks_the_plan_and_the_rule(
    tmp_path: Path, label: str | None, system: str
) -> None:
    profile = load_profile(str(profile_with_label(tmp_path, label)))
    kube = cluster("v1.30.2", *two_roles())  # type: ignore[arg-type]
    book = PlanBook(profile, lambda: kube)
    planned = {
        n: [t.name for t in book.for_node(n).egress_targets]
        for n in ("runai-1", "infra-1", "worker-1")
    }
    assert planned == {n: ["registry", "control"] if n == system else ["registry"] for n in planned}
    entries = [entry(report(n, cores=16, memory=64 * GB)) for n in planned]
    judged = system_nodes_rule(dataclasses.replace(view(*entries, kube=kube), profile=profile))
    assert judged.status == "pass", judged.reason
    assert judged.nodes == (system,)


def test_a_profile_reload_with_another_label_moves_the_system_targets(tmp_path: Path) -> None:
    kube = cluster("v1.30.2", *two_roles())  # type: ignore[arg-type]
    book = PlanBook(load_profile(str(profile_with_label(tmp_path, None))), lambda: kube)
    assert len(book.for_node("runai-1").egress_targets) == 2
    before = book.index()
    book.set_profile(
        load_profile(str(profile_with_label(tmp_path, "node-role.kubernetes.io/infra")))
    )
    # Same Kubernetes read, new label: the cached system set must not survive the profile.
    assert [t.name for t in book.for_node("runai-1").egress_targets] == ["registry"]
    assert [t.name for t in book.for_node("infra-1").egress_targets] == ["registry", "control"]
    assert book.index().system == frozenset({"infra-1"}) != before.system


def test_no_node_with_the_label_makes_every_node_a_system_node(tmp_path: Path) -> None:
    profile = load_profile(str(profile_with_label(tmp_path, "node-role.kubernetes.io/gpu-infra")))
    kube = cluster("v1.30.2", *two_roles())  # type: ignore[arg-type]
    book = PlanBook(profile, lambda: kube)
    assert all(len(book.for_node(n).egress_targets) == 2 for n in ("runai-1", "worker-1"))
    entries = [entry(report(n, cores=16, memory=64 * GB)) for n in ("runai-1", "infra-1")]
    judged = system_nodes_rule(dataclasses.replace(view(*entries, kube=kube), profile=profile))
    assert judged.status == "warn"
    assert "no node labelled node-role.kubernetes.io/gpu-infra" in judged.reason


@pytest.mark.parametrize("label", ["run.ai/system", "node-role.kubernetes.io/", "runai-system"])
def test_a_label_that_is_no_node_role_is_refused(tmp_path: Path, label: str) -> None:
    path = profile_with_label(tmp_path, label)
    with pytest.raises(ConfigError) as raised:
        load_profile(str(path))
    assert str(path) in str(raised.value)
    assert "key 'system_nodes.label'" in str(raised.value)
