"""The collector's verdicts with a Kubernetes API served by kmock and agents reporting over gRPC."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc.aio
import pytest

from collector.config import CollectorConfig, KubernetesConfig, ListenConfig
from collector.rules.model import Verdict
from collector.service import CollectorService
from preflight.v1 import report_pb2_grpc as pb_grpc
from tests.support.builders import report
from tests.support.kube import FORBIDDEN, FakeApi, version_info

AGENT_NODES = {"cp-1": (2, 0), "master-legacy": (4, 0), "gpu-1": (8, 8), "gpu-2": (4, 4)}


@pytest.fixture
async def service(api: FakeApi) -> AsyncIterator[CollectorService]:
    config = CollectorConfig(
        listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"),
        kubernetes=KubernetesConfig(mode="none", refresh_interval=0.1),
    )
    collector = CollectorService(config, kube_configuration=api.configuration())
    await collector.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
        stub = pb_grpc.CollectorStub(channel)
        # Agents run everywhere but on cpu-1; the agent on cp-1 sees what Kubernetes says.
        for name, (gpus, driver) in AGENT_NODES.items():
            message = report(name, cores=2 if name == "cp-1" else 32, pci=gpus, driver=driver)
            await stub.Report(message, timeout=5)
    yield collector
    await collector.stop()


async def verdict_becomes(
    collector: CollectorService,
    requirement: str,
    status: str,
    limit: float = 10.0,
    mentioning: str = "",
) -> Verdict:
    deadline = time.monotonic() + limit
    while True:
        verdict = next(v for v in collector.current_view().verdicts if v.requirement == requirement)
        if verdict.status == status and mentioning in verdict.reason:
            return verdict
        assert time.monotonic() < deadline, (
            f"{requirement} stayed {verdict.status}: {verdict.reason}"
        )
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("version", "status"),
    [
        ("v1.14.10", "fail"),
        ("v1.15.12", "warn"),
        ("v1.16.15-eks-abc", "warn"),
        ("v1.17.9", "pass"),
        ("v1.31.4", "pass"),
    ],
)
async def test_kubernetes_version_verdicts(
    api: FakeApi,
    service: CollectorService,
    version: str,
    status: str,
) -> None:
    api.version = version_info(version)
    await verdict_becomes(service, "kubernetes_version", status, mentioning=version)


async def test_control_plane_coverage_and_gpu_counts(service: CollectorService) -> None:
    control_plane = await verdict_becomes(service, "control_plane_hardware", "warn")
    assert "cp-1" in control_plane.nodes and "2 CPUs" in control_plane.reason
    coverage = await verdict_becomes(service, "agent_coverage", "fail")
    assert coverage.nodes == ("cpu-1",) and "cpu-1" in coverage.reason
    gpus = await verdict_becomes(service, "gpu_nodes", "warn")
    assert "gpu-1" in gpus.nodes and "7 allocatable" in gpus.reason
    view = service.current_view()
    assert ("gpu-1", 7) in view.allocatable_gpus
    assert ("cp-1", True) in view.kubernetes_nodes


async def test_forbidden_then_gone_is_unknown_with_reason_and_recovers(
    api: FakeApi,
    service: CollectorService,
) -> None:
    await verdict_becomes(service, "kubernetes_version", "pass")
    api.nodes_override = (403, FORBIDDEN)
    forbidden = await verdict_becomes(service, "kubernetes_version", "unknown")
    assert "403" in forbidden.reason
    coverage = await verdict_becomes(service, "agent_coverage", "pass")  # falls back to agents
    assert "cpu-1" not in coverage.reason
    await api.stop()
    await verdict_becomes(service, "kubernetes_version", "unknown", mentioning="unreachable")
    api.nodes_override = None
    await api.start()
    await verdict_becomes(service, "kubernetes_version", "pass", limit=20)
