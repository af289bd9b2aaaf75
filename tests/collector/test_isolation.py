"""One node's data never breaks another's output, and the judging loop is supervised.

Validation keeps bad data out, so these tests make a surface raise on purpose for one
node ("poison") — the way a future bug would — and check that the node is shown as
"report unusable" with the reason, the fault is counted, and every other node and
every verdict is still served. Then the judging loop itself fails and hangs.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

import collector.concerns.node as node_concern
import collector.exposition as exposition
import collector.web as web
from collector.config import CollectorConfig, ListenConfig
from collector.rules import REQUIREMENTS, RULES
from collector.rules.model import Evidence, Verdict
from collector.service import CollectorService
from preflight.v1 import report_pb2 as pb
from tests.support.builders import report as full_report
from tests.support.ingest_calls import send
from tests.support.metrics import ascrape, sample


def report(name: str) -> pb.NodeReport:
    message = full_report(name, pci=4, driver=4)
    message.sent_at.GetCurrentTime()
    return message


@pytest.fixture
async def cluster() -> AsyncIterator[CollectorService]:
    config = CollectorConfig(
        listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"), heartbeat_interval=1.0
    )
    service = CollectorService(config)
    await service.start()
    for name in ("good-1", "poison", "good-2"):
        await send(service, report(name))
    yield service
    await service.stop()


async def get(service: CollectorService, path: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{service.http_port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def poisoned(node_names: Any) -> bool:
    return "poison" in node_names


async def test_a_rule_that_raises_on_one_node_judges_the_others(
    cluster: CollectorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = RULES["gpu_nodes"]

    def fragile(view: Evidence) -> Verdict:
        if poisoned([n.name for n in view.state.nodes]):
            raise ZeroDivisionError("a bug on this node's data")
        return original(view)

    monkeypatch.setitem(RULES, "gpu_nodes", fragile)
    await cluster.observe()
    view = cluster.current_view()
    judged = cluster.profile.requirement_phases()
    assert [v.requirement for v in view.verdicts] == [r for r in REQUIREMENTS if r in judged]
    gpu = next(v for v in view.verdicts if v.requirement == "gpu_nodes")
    assert gpu.status == "pass" and "2 GPU nodes" in gpu.reason  # judged without poison
    assert dict(view.unusable)["poison"].startswith("gpu_nodes: ZeroDivisionError")
    metrics = await ascrape(f"http://127.0.0.1:{cluster.http_port}/metrics")
    assert sample(metrics, "preflight_node_report_unusable", node="poison") == 1.0
    assert sample(metrics, "preflight_node_cpu_cores", node="poison") is None
    assert sample(metrics, "preflight_node_cpu_cores", node="good-1") == 32.0
    assert sample(metrics, "preflight_node_data_errors_total", surface="rules") == 1.0
    status, page = await get(cluster, "/")
    assert status == 200 and 'id="unusable"' in page and "ZeroDivisionError" in page
    assert page.count('data-node="good-2"') >= 3  # egress, capacity, nodes tables
    status, body = await get(cluster, "/api/v1/nodes")
    nodes = {n["node"]: n for n in json.loads(body)["nodes"]}
    assert "gpu_nodes" in nodes["poison"]["unusable"] and "unusable" not in nodes["good-1"]


async def test_metrics_render_isolates_one_node(
    cluster: CollectorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = exposition.node_samples

    def fragile(node: Any, *args: Any) -> Any:
        if node.name == "poison":
            raise ValueError("cannot format")
        return original(node, *args)

    monkeypatch.setattr(exposition, "node_samples", fragile)
    status, text = await get(cluster, "/metrics")
    assert status == 200
    assert 'preflight_node_report_unusable{node="poison"} 1.0' in text
    assert 'preflight_egress_up{node="good-2",target="hub.docker.com"} 1.0' in text
    assert 'preflight_egress_up{node="poison"' not in text
    assert 'preflight_node_data_errors_total{surface="metrics"} 1.0' in text
    # The reference renderer (prometheus_client) isolates the same way, byte for byte.
    assert exposition.render_with_client(cluster.current_view()) == cluster.exposition.render(
        cluster.current_view()
    )


async def test_json_isolates_one_node(
    cluster: CollectorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = web.node_summary

    def fragile(node: Any, now: float, *args: Any) -> Any:
        if node.name == "poison":
            raise KeyError("bad")
        return original(node, now, *args)

    monkeypatch.setattr(web, "node_summary", fragile)
    status, body = await get(cluster, "/api/v1/nodes")
    assert status == 200
    nodes = {n["node"]: n for n in json.loads(body)["nodes"]}
    assert nodes["poison"]["unusable"].startswith("KeyError")
    assert nodes["good-1"]["egress"]["gcr.io/run-ai-prod"] == "up"
    metrics = await ascrape(f"http://127.0.0.1:{cluster.http_port}/metrics")
    assert sample(metrics, "preflight_node_data_errors_total", surface="json") == 1.0


async def test_status_page_isolates_one_node(
    cluster: CollectorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = node_concern._gpu_counts

    def fragile(r: pb.NodeReport) -> Any:
        if r.node_name == "poison":
            raise OverflowError("date value out of range")
        return original(r)

    monkeypatch.setattr(node_concern, "_gpu_counts", fragile)
    status, page = await get(cluster, "/")
    assert status == 200
    assert 'id="unusable"' in page and "OverflowError" in page
    assert 'data-node="good-1"' in page and 'id="capacity-totals"' in page
    assert "cluster total (2 nodes)" in page
    metrics = await ascrape(f"http://127.0.0.1:{cluster.http_port}/metrics")
    assert sample(metrics, "preflight_node_data_errors_total", surface="status_page") == 1.0


async def until(condition: Any, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_the_judging_loop_survives_exceptions_and_readyz_tells(
    cluster: CollectorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster.verdicts_stale_after = 0.5
    assert (await get(cluster, "/readyz"))[0] == 200

    def broken(view: Evidence) -> Any:
        raise RuntimeError("judging bug")

    monkeypatch.setattr(cluster, "_judge", broken)
    # Something must change for the loop to re-judge: a new report each time.
    for sequence in range(2, 5):
        await send(cluster, pb.NodeReport(node_name="good-1", instance_id="i", sequence=sequence))
        errors = cluster.judging_errors
        await until(lambda e=errors: cluster.judging_errors > e)  # type: ignore[misc]
    await until(lambda: time.time() - cluster.current_view().judged_at > 0.5)
    status, body = await get(cluster, "/readyz")
    assert status == 503, body
    metrics = await ascrape(f"http://127.0.0.1:{cluster.http_port}/metrics")
    assert (sample(metrics, "preflight_judging_errors_total") or 0) >= 3
    monkeypatch.undo()
    await until(lambda: time.time() - cluster.current_view().judged_at < 0.5)
    assert (await get(cluster, "/readyz"))[0] == 200


async def test_a_hung_judge_makes_readyz_fail(
    cluster: CollectorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster.verdicts_stale_after = 0.5
    release = threading.Event()
    original = cluster._judge

    def hung(view: Evidence, in_process: bool = False) -> Any:
        release.wait(30)
        return original(view, in_process)

    monkeypatch.setattr(cluster, "_judge", hung)
    await send(cluster, pb.NodeReport(node_name="good-2", sequence=2))
    try:
        await until(lambda: time.time() - cluster.current_view().judged_at > 0.5)
        assert (await get(cluster, "/readyz"))[0] == 503
        metrics = await ascrape(f"http://127.0.0.1:{cluster.http_port}/metrics")
        judged = sample(metrics, "preflight_verdicts_timestamp_seconds")
        assert judged is not None and time.time() - judged > 0.5
    finally:
        release.set()
    await until(lambda: time.time() - cluster.current_view().judged_at < 0.5)
