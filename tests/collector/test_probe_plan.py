"""The collector's probe plans: derived from the profile and node roles, sent in every ack,
outdated plans exposed, a profile file re-read when it changes."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc.aio
import pytest

from collector.config import CollectorConfig, KubernetesConfig, ListenConfig
from collector.kube.facts import KubeFacts
from collector.plan import PlanBook, system_nodes
from collector.rules.egress_install import evaluate as egress_install
from collector.service import CollectorService
from preflight.plan import content_version, plan_from_profile
from preflight.profile import load_profile
from preflight.v1 import report_pb2 as pb
from preflight.v1 import report_pb2_grpc as pb_grpc
from tests.support.builders import cluster, entry, kube_node, report, view
from tests.support.kube import FakeApi
from tests.support.metrics import ascrape, sample
from tests.support.profiles import local_target, write_profile

SYSTEM = "node-role.kubernetes.io/runai-system"


def scoped_profile(tmp_path: Path) -> Path:
    return write_profile(
        tmp_path / "scoped.yaml",
        [
            local_target("registry", 1001, scope="all"),
            local_target("control", 1002, scope="system"),
        ],
        shared_volume={"paths": ["/mnt/nas"], "write_expected": True, "marker_max_age": "5m"},
    )


def test_plan_from_profile_keeps_system_targets_for_system_nodes(tmp_path: Path) -> None:
    profile = load_profile(str(scoped_profile(tmp_path)))
    system = plan_from_profile(profile, system=True)
    other = plan_from_profile(profile, system=False)
    assert [t.name for t in system.egress_targets] == ["registry", "control"]
    assert [t.scope for t in system.egress_targets] == [pb.TARGET_SCOPE_ALL, pb.TARGET_SCOPE_SYSTEM]
    assert [t.name for t in other.egress_targets] == ["registry"]
    assert [(v.path, v.write_expected) for v in system.shared_volumes] == [("/mnt/nas", True)]
    assert system.version != other.version
    # The version is the content: equal plans, equal versions; any change, a new one.
    assert plan_from_profile(profile, system=True).version == system.version
    assert content_version(system) == system.version
    changed = pb.ProbePlan()
    changed.CopyFrom(system)
    changed.egress_targets[0].port = 1003
    assert content_version(changed) != system.version


def test_runai_2020_gives_every_node_the_same_six_targets() -> None:
    profile = load_profile("runai-2020")
    system, other = (plan_from_profile(profile, system=s) for s in (True, False))
    assert system.version == other.version and len(system.egress_targets) == 6
    gcr = next(t for t in system.egress_targets if t.name == "gcr.io/run-ai-prod")
    assert (gcr.host, gcr.path, list(gcr.expect_status)) == ("gcr.io", "/v2/", [200, 401])
    assert dict(gcr.require_header_for) == {401: "www-authenticate"}


def test_system_nodes_come_from_the_runai_system_role(tmp_path: Path) -> None:
    labelled = dataclasses.replace(kube_node("sys-1"), roles=("runai-system",))
    kube = cluster("v1.17.4", labelled, kube_node("worker-1"))
    assert system_nodes(kube) == frozenset({"sys-1"})
    # Nobody labelled, or no Kubernetes API: every node counts as a system node.
    assert system_nodes(cluster("v1.17.4", kube_node("worker-1"))) is None
    assert system_nodes(KubeFacts()) is None

    profile = load_profile(str(scoped_profile(tmp_path)))
    book = PlanBook(profile, lambda: kube)
    assert [t.name for t in book.for_node("sys-1").egress_targets] == ["registry", "control"]
    assert [t.name for t in book.for_node("worker-1").egress_targets] == ["registry"]
    index = book.index()
    assert index.outdated("worker-1", book.for_node("sys-1").version)
    assert not index.outdated("worker-1", book.for_node("worker-1").version)


def test_egress_rule_wants_system_targets_from_system_nodes_only(tmp_path: Path) -> None:
    profile = load_profile(str(scoped_profile(tmp_path)))
    labelled = dataclasses.replace(kube_node("sys-1"), roles=("runai-system",))
    kube = cluster("v1.17.4", labelled, kube_node("worker-1"))
    worker = entry(report("worker-1", targets=("registry",)))
    system_ok = entry(report("sys-1", targets=("registry", "control")))
    base = view(worker, system_ok, kube=kube)
    judged = egress_install(dataclasses.replace(base, profile=profile))
    assert judged.status == "pass", judged.reason
    # The same system node without its system target fails, naming it.
    system_short = entry(report("sys-1", targets=("registry",)))
    failing = dataclasses.replace(view(worker, system_short, kube=kube), profile=profile)
    judged = egress_install(failing)
    assert judged.status == "fail" and "sys-1 → control: not probed" in judged.reason
    # Without labels every node is a system node: the worker now owes `control` too.
    unlabelled = cluster("v1.17.4", kube_node("sys-1"), kube_node("worker-1"))
    judged = egress_install(
        dataclasses.replace(view(worker, system_ok, kube=unlabelled), profile=profile)
    )
    assert judged.status == "fail" and "worker-1 → control" in judged.reason


@pytest.fixture
async def collector(tmp_path: Path) -> AsyncIterator[CollectorService]:
    service = CollectorService(
        CollectorConfig(
            listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"),
            profile=str(scoped_profile(tmp_path)),
            kubernetes=KubernetesConfig(mode="none"),
        )
    )
    await service.start()
    yield service
    await service.stop()


async def send(service: CollectorService, message: pb.NodeReport) -> pb.ReportAck:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        ack: pb.ReportAck = await pb_grpc.CollectorStub(channel).Report(message, timeout=5)
    return ack


async def test_every_ack_carries_the_plan_and_outdated_plans_show(
    collector: CollectorService,
) -> None:
    fresh = report("node-1", targets=("registry", "control"))
    ack = await send(collector, fresh)
    plan = ack.plan
    assert [t.name for t in plan.egress_targets] == ["registry", "control"]
    assert plan.profile == "test-local" and plan.version
    # A node still on an older plan (or an agent without plans) is outdated.
    stale = report("node-2", targets=("registry",))
    stale.plan_version = "0123456789abcdef"
    stale.local_targets.append("extra")
    assert (await send(collector, stale)).plan.version == plan.version
    fresh.sequence = 2
    fresh.plan_version = plan.version
    fresh.plan_source = pb.PLAN_SOURCE_COLLECTOR
    await send(collector, fresh)
    base = f"http://127.0.0.1:{collector.http_port}"
    metrics = await ascrape(base + "/metrics")
    assert sample(metrics, "preflight_agent_plan_outdated", node="node-1") == 0.0
    assert sample(metrics, "preflight_agent_plan_outdated", node="node-2") == 1.0
    async with aiohttp.ClientSession() as session, session.get(base + "/api/v1/nodes") as r:
        nodes = {n["node"]: n["plan"] for n in (await r.json())["nodes"]}
    assert nodes["node-1"] == {
        "version": plan.version,
        "expected_version": plan.version,
        "outdated": False,
        "source": "collector",
        "local_targets": [],
        "local_volumes": [],
    }
    assert nodes["node-2"]["outdated"] is True and nodes["node-2"]["local_targets"] == ["extra"]


async def test_a_changed_profile_file_is_reloaded_and_a_broken_one_kept_out(
    collector: CollectorService, caplog: pytest.LogCaptureFixture
) -> None:
    before = collector.plans.for_node("n").version
    assert collector.reload_profile() is False  # unchanged file
    path = Path(collector.config.profile)
    write_profile(path, [local_target("only", 1009)], name="swapped")
    assert collector.reload_profile() is True
    after = collector.plans.for_node("n")
    assert after.version != before and [t.name for t in after.egress_targets] == ["only"]
    ack = await send(collector, report("n", targets=("only",)))
    assert ack.plan.version == after.version
    await collector.observe()
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{collector.http_port}/api/v1/verdicts") as r,
    ):
        assert (await r.json())["profile"] == "swapped"
    # A broken file is logged and the profile in force stays.
    # (One character longer: a new size, so a new stamp even within one mtime tick.)
    path.write_text(path.read_text().replace("fail_after: 2", "fail_afterr: 2"))
    assert collector.reload_profile() is False
    assert "fail_afterr" in caplog.text
    assert collector.plans.for_node("n").version == after.version
    assert collector.profile.name == "swapped"


async def test_system_role_from_a_kubernetes_api_decides_each_nodes_plan(
    api: FakeApi, tmp_path: Path
) -> None:
    """Node labels as a real API (kmock, complete Node objects) serves them."""
    gpu_1 = next(n for n in api.nodes["items"] if n["metadata"]["name"] == "gpu-1")
    gpu_1["metadata"]["labels"][SYSTEM] = ""
    service = CollectorService(
        CollectorConfig(
            listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"),
            profile=str(scoped_profile(tmp_path)),
            kubernetes=KubernetesConfig(mode="none", refresh_interval=0.1),
        ),
        kube_configuration=api.configuration(),
    )
    await service.start()
    try:

        async def plan_targets(node: str) -> list[str]:
            ack = await send(service, report(node, targets=("registry",)))
            return [t.name for t in ack.plan.egress_targets]

        async with asyncio.timeout(10):
            while not service.kube.latest().available:
                await asyncio.sleep(0.05)
        assert await plan_targets("gpu-1") == ["registry", "control"]
        assert await plan_targets("gpu-2") == ["registry"]
        # The label goes: nobody is labelled, so every node counts as a system node.
        del gpu_1["metadata"]["labels"][SYSTEM]
        async with asyncio.timeout(10):
            while await plan_targets("gpu-2") != ["registry", "control"]:
                await asyncio.sleep(0.1)
    finally:
        await service.stop()
