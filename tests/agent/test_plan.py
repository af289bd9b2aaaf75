"""The agent's probe plan: packaged profile first, the collector's plan at once, local changes.

Against a real in-process collector over gRPC whose profile file is replaced: the
agent probes the new plan in the cycle right after the acknowledgement that carried
it, long before its (here 30 s) probe interval would have come round.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from pathlib import Path

import pytest
import trustme

from agent.client import ReportClient
from agent.config import AgentConfig, EgressConfig, EgressTarget, MountsConfig, SharedVolume
from agent.plan import AgentPlan, merge
from agent.probes import results as r
from agent.runner import Agent, ProbeSet
from collector.config import CollectorConfig, KubernetesConfig, ListenConfig
from collector.service import CollectorService
from preflight.plan import plan_from_profile
from preflight.profile import load_profile
from preflight.v1 import report_pb2 as pb
from tests.support.procs import BIN, HttpsServer
from tests.support.profiles import local_target, write_profile


def plan_of(*names: str, volumes: tuple[str, ...] = ()) -> pb.ProbePlan:
    plan = pb.ProbePlan(profile="p", version="v-" + "-".join(names))
    for name in names:
        plan.egress_targets.add(name=name, host=f"{name}.test", port=443, path="/", phase="install")
    for path in volumes:
        plan.shared_volumes.add(path=path, write_expected=True)
    return plan


def test_local_targets_override_by_name_and_add_the_rest() -> None:
    config = AgentConfig(
        egress=EgressConfig(
            targets=(
                EgressTarget(name="b", host="b.mirror", proxy="none", family="ipv4"),
                EgressTarget(name="extra", host="extra.test"),
            )
        ),
        mounts=MountsConfig(volumes=(SharedVolume(path="/mnt/two", write_expected=False),)),
    )
    merged = merge(config, plan_of("a", "b", volumes=("/mnt/one", "/mnt/two")), 1)
    assert [(t.name, t.host) for t in merged.targets] == [
        ("a", "a.test"),
        ("b", "b.mirror"),
        ("extra", "extra.test"),
    ]
    assert merged.targets[1].proxy == "none" and merged.targets[1].family == "ipv4"
    assert merged.local_targets == ("b", "extra")
    assert [(v.path, v.write_expected) for v in merged.volumes] == [
        ("/mnt/one", True),
        ("/mnt/two", False),
    ]
    assert merged.local_volumes == ("/mnt/two",)
    assert merged.version == "v-a-b"


def test_adopt_takes_new_versions_only() -> None:
    plan = AgentPlan(AgentConfig(), initial=plan_of("a"))
    assert plan.current.source == pb.PLAN_SOURCE_PACKAGED_PROFILE
    # A collector that sends no plan (older collector): ours stays.
    assert plan.adopt(pb.ProbePlan()) is False
    assert [t.name for t in plan.current.targets] == ["a"]
    # The same version from the collector: no new cycle needed, but now it is the collector's.
    assert plan.adopt(plan_of("a")) is False
    assert plan.current.source == pb.PLAN_SOURCE_COLLECTOR
    assert plan.adopt(plan_of("b")) is True
    assert [t.name for t in plan.current.targets] == ["b"]
    assert plan.adopt(plan_of("b")) is False


async def test_a_new_plan_is_probed_in_the_next_cycle_not_the_next_interval(
    tmp_path: Path,
) -> None:
    profile = write_profile(
        tmp_path / "profile.yaml", [local_target("old", 1001), local_target("old-2", 1002)]
    )
    service = CollectorService(
        CollectorConfig(
            listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"),
            heartbeat_interval=0.5,
            profile=str(profile),
            kubernetes=KubernetesConfig(mode="none"),
        )
    )
    await service.start()
    # Heartbeat as the collector asks; the probe interval far longer than the test waits.
    config = AgentConfig(probe_interval=30.0, heartbeat_interval=0.5, profile=str(profile))
    plan = AgentPlan(config)
    probed: list[tuple[str, ...]] = []

    async def hardware() -> r.HardwareFacts:
        return r.HardwareFacts(logical_cores=2, memory_total_bytes=1 << 30)

    async def gpus() -> r.GpuFacts:
        return r.GpuFacts()

    async def mounts() -> list[r.MountResult]:
        return []

    async def egress() -> list[r.EgressResult]:
        names = tuple(t.name for t in plan.current.targets)
        probed.append(names)
        return [r.EgressResult(target=n, url=f"https://{n}/", up=True) for n in names]

    probes = ProbeSet.of(
        hardware=(hardware, 1.0),
        gpus=(gpus, 1.0),
        mounts=(mounts, 1.0),
        egress=(egress, 1.0),
        plan=plan,
    )
    client = ReportClient(f"127.0.0.1:{service.grpc_port}", timeout=2, max_backoff=0.5)
    agent = Agent(config, "node-p", probes, client.submit)
    client.on_ack = agent.adopt_ack
    tasks = [asyncio.create_task(client.run()), asyncio.create_task(agent.run())]
    try:
        async with asyncio.timeout(10):
            while not probed:
                await asyncio.sleep(0.05)
        assert probed == [("old", "old-2")]
        write_profile(tmp_path / "profile.yaml", [local_target("new", 1003)])
        assert service.reload_profile() is True
        expected = service.plans.for_node("node-p").version
        # 10 s against a 30 s probe interval: only the plan's own wake-up can make it.
        started = time.monotonic()
        async with asyncio.timeout(10):
            while True:
                entry = service.state.snapshot(time.time()).node("node-p")
                if entry is not None and entry.report.plan_version == expected:
                    break
                await asyncio.sleep(0.05)
        assert time.monotonic() - started < config.probe_interval / 3
        assert probed == [("old", "old-2"), ("new",)]
        report = entry.report
        assert [e.target for e in report.egress] == ["new"]
        assert report.plan_source == pb.PLAN_SOURCE_COLLECTOR
        assert list(report.local_targets) == []
    finally:
        agent.stop()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await client.close()
        await service.stop()


@pytest.mark.timeout(90)
def test_once_probes_exactly_the_given_profile(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = HttpsServer(ca)
    try:
        profile = write_profile(tmp_path / "local.yaml", [local_target("local-site", server.port)])
        result = subprocess.run(
            [str(BIN / "preflight-agent"), "--once", "--format", "json", "--profile", str(profile)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={"SSL_CERT_FILE": str(ca_file), "PATH": "/usr/bin:/bin"},
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [e["target"] for e in report["egress"]] == ["local-site"]
    assert report["egress"][0]["outcome"] == "OUTCOME_UP"
    assert (
        report["planVersion"] == plan_from_profile(load_profile(str(profile)), system=True).version
    )
    assert report["planSource"] == "PLAN_SOURCE_PACKAGED_PROFILE"


def test_an_unknown_profile_is_a_config_error() -> None:
    result = subprocess.run(
        [str(BIN / "preflight-agent"), "--once", "--profile", "runai-1999"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "runai-1999" in result.stderr and "runai-2020" in result.stderr
