"""With the Kubernetes API readable, a report for a name that is no node is refused, counted."""

# ruff: noqa: F811 — pytest injects the imported `api` fixture by parameter name

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from collector.config import CollectorConfig, KubernetesConfig, ListenConfig
from collector.service import CollectorService
from tests.support.builders import report
from tests.support.ingest_calls import send
from tests.support.kube import FakeApi, api  # noqa: F401 — `api` is a fixture
from tests.support.metrics import ascrape, sample


@pytest.fixture
async def service(api: FakeApi) -> AsyncIterator[CollectorService]:
    config = CollectorConfig(
        listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"),
        kubernetes=KubernetesConfig(mode="none", refresh_interval=0.2),
    )
    collector = CollectorService(config, kube_configuration=api.configuration())
    await collector.start()
    deadline = time.monotonic() + 10
    while not collector.kube.latest().available:  # the first read of the node list
        assert time.monotonic() < deadline, collector.kube.latest().error
        await asyncio.sleep(0.05)
    yield collector
    await collector.stop()


async def test_unknown_names_are_refused_until_kubernetes_knows_them(
    api: FakeApi, service: CollectorService
) -> None:
    await send(service, report("gpu-1"))  # a Kubernetes node: accepted
    for name in ("made-up-1", "made-up-2"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await send(service, report(name))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "unknown_node" in (caught.value.details() or "")
    await service.observe()
    url = f"http://127.0.0.1:{service.http_port}/metrics"
    metrics = await ascrape(url)
    assert sample(metrics, "preflight_reports_rejected_total", reason="unknown_node") == 2.0
    assert sample(metrics, "preflight_agent_up", node="made-up-1") is None
    assert sample(metrics, "preflight_agent_up", node="gpu-1") == 1.0
    coverage = next(v for v in service.current_view().verdicts if v.requirement == "agent_coverage")
    assert "made-up" not in coverage.reason and "made-up-1" not in coverage.nodes

    # The node joins the cluster: known within one refresh, then its agent's report is stored.
    joined = copy.deepcopy(api.nodes["items"][2])
    joined["metadata"]["name"] = "gpu-3"
    joined["metadata"]["uid"] = "0f7c8a52-3a55-4c0e-9d0a-9f7ad2e1b3c3"
    api.nodes["items"].append(joined)
    deadline = time.monotonic() + 10
    while True:
        try:
            await send(service, report("gpu-3"))
            break
        except grpc.aio.AioRpcError as error:
            assert "unknown_node" in (error.details() or "")
            assert time.monotonic() < deadline, "gpu-3 never became known"
            await asyncio.sleep(0.1)
    metrics = await ascrape(url)
    assert sample(metrics, "preflight_agent_up", node="gpu-3") == 1.0
