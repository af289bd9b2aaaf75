"""Table-driven tests of every verdict rule (shared_volume has its own file) and of hysteresis."""

from __future__ import annotations

import pytest

from collector.kube.facts import KubeFacts
from collector.rules import (
    agent_coverage,
    cluster_ready,
    control_plane_hardware,
    egress_install,
    egress_runtime,
    evaluate_all,
    gpu_nodes,
    kubernetes_version,
)
from collector.rules.hysteresis import HysteresisTracker
from collector.rules.model import Verdict
from tests.support.builders import NOW, PROFILE, cluster, entry, kube_node, report, view

WORKER = kube_node("gpu-1", gpus=8)
MASTER = kube_node(
    "master",
    control_plane=True,
    cpu=4,
    memory=16 << 30,
    taints=("node-role.kubernetes.io/control-plane=:NoSchedule",),
)


@pytest.mark.parametrize(
    ("version", "status"),
    [
        ("v1.14.10", "fail"),
        ("v1.15.0", "warn"),
        ("v1.16.15-eks-abc", "warn"),
        ("v1.17.4", "pass"),
        ("v1.31.2+k3s1", "pass"),
        ("v2.0.0", "pass"),  # newer than anything the profile knows: never a false failure
        ("garbage", "unknown"),
    ],
)
def test_kubernetes_version(version: str, status: str) -> None:
    verdict = kubernetes_version.evaluate(view(kube=cluster(version, WORKER)))
    assert verdict.status == status, verdict.reason


def test_kubernetes_version_old_kubelets_fail_and_are_named() -> None:
    old = kube_node("old-1", kubelet="v1.14.3")
    verdict = kubernetes_version.evaluate(view(kube=cluster("v1.17.0", WORKER, old)))
    assert verdict.status == "fail" and verdict.nodes == ("old-1",)


def test_kubernetes_backed_rules_are_unknown_with_the_api_error() -> None:
    kube = KubeFacts(error="Kubernetes API forbids listing nodes (403)")
    for rule in (kubernetes_version, control_plane_hardware):
        verdict = rule.evaluate(view(kube=kube))
        assert verdict.status == "unknown" and "403" in verdict.reason


@pytest.mark.parametrize(
    ("node", "agent_cores", "status"),
    [
        (MASTER, None, "pass"),
        (
            kube_node(
                "m",
                control_plane=True,
                cpu=2,
                memory=16 << 30,
                taints=("node-role.kubernetes.io/master=:NoSchedule",),
            ),
            None,
            "warn",
        ),
        (
            kube_node("m", control_plane=True, cpu=8, memory=4 << 30, taints=("x=:NoSchedule",)),
            None,
            "warn",
        ),
        (
            kube_node(
                "m", control_plane=True, cpu=8, memory=16 << 30, gpus=4, taints=("x=:NoSchedule",)
            ),
            None,
            "warn",
        ),
        (kube_node("m", control_plane=True, cpu=8, memory=16 << 30), None, "warn"),  # untainted
        # Kubernetes says 8 CPUs, the agent on the machine sees 2: the agent wins.
        (
            kube_node("m", control_plane=True, cpu=8, memory=16 << 30, taints=("x=:NoSchedule",)),
            2,
            "warn",
        ),
    ],
)
def test_control_plane_hardware_is_advice(
    node: object, agent_cores: int | None, status: str
) -> None:
    entries = [entry(report("m", cores=agent_cores))] if agent_cores else []
    verdict = control_plane_hardware.evaluate(view(*entries, kube=cluster("v1.17.0", node, WORKER)))  # type: ignore[arg-type]
    assert verdict.status == status, verdict.reason
    assert verdict.status != "fail"


def test_managed_control_plane_passes() -> None:
    verdict = control_plane_hardware.evaluate(view(kube=cluster("v1.17.0", WORKER)))
    assert verdict.status == "pass"


@pytest.mark.parametrize(
    ("entries", "kube", "status", "named"),
    [
        ([], None, "unknown", ()),
        ([report("a")], None, "fail", ()),  # no GPU anywhere
        ([report("a", pci=8, driver=8)], None, "pass", ()),
        ([report("a", pci=8, driver=7)], None, "warn", ("a",)),
        (
            [report("gpu-1", pci=8, driver=8)],
            cluster("v1.17.0", kube_node("gpu-1", gpus=8, allocatable_gpus=7)),
            "warn",
            ("gpu-1",),
        ),
        ([report("gpu-1", pci=8, driver=8)], cluster("v1.17.0", WORKER), "pass", ()),
    ],
)
def test_gpu_nodes(
    entries: list[object], kube: KubeFacts | None, status: str, named: tuple[str, ...]
) -> None:
    verdict = gpu_nodes.evaluate(view(*(entry(r) for r in entries), kube=kube))  # type: ignore[arg-type]
    assert verdict.status == status, verdict.reason
    assert set(named) <= set(verdict.nodes)


def test_gpu_mismatch_reason_names_the_counts() -> None:
    verdict = gpu_nodes.evaluate(
        view(
            entry(report("gpu-1", pci=8, driver=8)),
            kube=cluster("v1.17.0", kube_node("gpu-1", gpus=8, allocatable_gpus=7)),
        )
    )
    assert "8 pci" in verdict.reason and "7 allocatable" in verdict.reason


def test_agent_coverage_standalone_and_with_kubernetes() -> None:
    assert agent_coverage.evaluate(view()).status == "unknown"
    assert agent_coverage.evaluate(view(entry(report("a")))).status == "pass"
    stale = agent_coverage.evaluate(view(entry(report("a")), entry(report("b"), age=500, up=False)))
    assert stale.status == "fail" and stale.nodes == ("b",)
    late = agent_coverage.evaluate(view(entry(report("a"), age=50)))
    assert late.status == "warn" and late.nodes == ("a",)
    kube = cluster("v1.17.0", kube_node("a"), kube_node("no-agent"))
    missing = agent_coverage.evaluate(view(entry(report("a")), kube=kube))
    assert missing.status == "fail" and missing.nodes == ("no-agent",)
    assert "no-agent" in missing.reason
    # All agents stale: every node is named.
    all_stale = agent_coverage.evaluate(
        view(entry(report("a"), age=999, up=False), entry(report("b"), age=999, up=False))
    )
    assert all_stale.status == "fail" and all_stale.nodes == ("a", "b")


def test_egress_rules_split_by_phase_and_name_node_target_reason() -> None:
    broken = entry(report("n2", down={"quay.io": "proxy_denied"}))
    v = view(entry(report("n1")), broken)
    install = egress_install.evaluate(v)
    runtime = egress_runtime.evaluate(v)
    assert install.status == "fail" and install.nodes == ("n2",) and install.targets == ("quay.io",)
    assert "proxy_denied" in install.reason
    assert runtime.status == "pass"
    missing_target = entry(report("n3", targets=("quay.io",)))
    assert egress_runtime.evaluate(view(missing_target)).status == "fail"
    assert egress_install.evaluate(view()).status == "unknown"


def test_egress_through_a_trusted_inspecting_proxy_warns_and_names_the_issuer() -> None:
    intercepted = report("n1")
    for e in intercepted.egress:
        e.certificate.issuer = "CN=Corp Inspection CA"
        e.certificate.verified = True
        e.certificate.trusted_by_extra_ca = e.target == "quay.io"
    v = view(entry(intercepted), entry(report("n2")))
    install = egress_install.evaluate(v)
    assert install.status == "warn" and install.nodes == ("n1",)
    assert install.targets == ("quay.io",) and "CN=Corp Inspection CA" in install.reason
    assert egress_runtime.evaluate(v).status == "pass"
    # A failure elsewhere still fails: interception never hides a broken target.
    broken = entry(report("n2", down={"hub.docker.com": "connect_timeout"}))
    assert egress_install.evaluate(view(entry(intercepted), broken)).status == "fail"


def test_egress_ignores_stale_nodes() -> None:
    stale = entry(report("gone", down={"app.run.ai": "timeout"}), age=999, up=False)
    assert egress_runtime.evaluate(view(entry(report("ok")), stale)).status == "pass"


def test_cluster_ready_needs_every_requirement_of_the_phase() -> None:
    kube = cluster("v1.17.0", MASTER, WORKER)
    nodes = [entry(report(n, pci=8, driver=8)) for n in ("master", "gpu-1")]
    verdicts = evaluate_all(view(*nodes, kube=kube))
    by_id = {v.requirement: v.status for v in verdicts}
    assert by_id["shared_volume"] == "unknown"  # no volume configured: cannot be ready
    assert cluster_ready(verdicts) == {"install": False, "runtime": False}
    passing = [Verdict(v.requirement, "pass", "") for v in verdicts]
    assert cluster_ready(passing) == {"install": True, "runtime": True}
    runtime_broken = [
        v if v.requirement != "egress_runtime" else Verdict(v.requirement, "fail", "")
        for v in passing
    ]
    assert cluster_ready(runtime_broken) == {"install": True, "runtime": False}


def observe(tracker: HysteresisTracker, status: str, at: float) -> Verdict:
    return tracker.observe([Verdict("egress_install", status, f"raw {status}")], at)[0]  # type: ignore[arg-type]


def test_flapping_never_turns_fail_but_two_consecutive_failures_do() -> None:
    tracker = HysteresisTracker(PROFILE.hysteresis)
    assert observe(tracker, "pass", NOW).status == "pass"
    for i in range(10):
        shown = observe(tracker, "fail" if i % 2 == 0 else "pass", NOW + i)
        assert shown.status == "pass", f"flapped to {shown.status} at observation {i}"
    assert observe(tracker, "fail", NOW + 20).status == "pass"
    confirmed = observe(tracker, "fail", NOW + 21)
    assert confirmed.status == "fail" and confirmed.since == NOW + 21
    # And back only after two passing observations.
    assert observe(tracker, "pass", NOW + 22).status == "fail"
    back = observe(tracker, "pass", NOW + 23)
    assert back.status == "pass" and back.since == NOW + 23


def test_since_is_kept_while_the_status_holds() -> None:
    tracker = HysteresisTracker(PROFILE.hysteresis)
    first = observe(tracker, "warn", NOW)
    later = observe(tracker, "warn", NOW + 100)
    assert first.since == later.since == NOW
    assert observe(tracker, "pass", NOW + 200).since == NOW + 200
