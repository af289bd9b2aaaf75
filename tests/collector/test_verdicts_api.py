"""/api/v1/verdicts answers from the state's counts, never from a snapshot of every node."""

from __future__ import annotations

import json
import time
import traceback
from typing import Any

import aiohttp
import pytest

from collector.concerns.cluster import verdict_json
from collector.service import CollectorService
from collector.state import ClusterState
from preflight.v1 import report_pb2 as pb
from tests.support.ingest_calls import report, send


async def test_verdicts_take_no_node_snapshot(
    collector: CollectorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        await send(collector, report(name=f"node-{i}"))
    await collector.observe()
    # Who took each snapshot (the observer and the pre-encoder take theirs meanwhile).
    callers: list[set[str]] = []
    original = ClusterState.snapshot

    def counted(self: ClusterState, now: float) -> Any:
        callers.append({frame.name for frame in traceback.extract_stack()})
        return original(self, now)

    monkeypatch.setattr(ClusterState, "snapshot", counted)
    before = time.time()
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{collector.http_port}/api/v1/verdicts"
        async with http.get(url) as response:
            assert response.status == 200
            body = await response.json()
        async with http.get(f"http://127.0.0.1:{collector.http_port}/api/v1/nodes") as nodes:
            listed = await nodes.json()
    # The verdicts came without a snapshot; the node list, which shows nodes, took one.
    assert not [c for c in callers if "verdicts" in c]
    assert [c for c in callers if "nodes" in c]
    assert [n["node"] for n in listed["nodes"]] == ["node-0", "node-1", "node-2"]
    assert body["generated_at"] >= before
    judged = {v.requirement for v in collector.current_view().verdicts}
    assert {v["requirement"] for v in body["verdicts"]} == judged
    assert body["ready"] == dict(collector.current_view().ready)


async def test_a_summary_counts_like_a_snapshot(collector: CollectorService) -> None:
    now = time.time()
    summary = collector.state.summary(now)
    snapshot = collector.state.snapshot(now)
    assert summary.nodes == ()
    assert summary.taken_at == snapshot.taken_at == now
    assert (summary.version, summary.reports_received, summary.rejected) == (
        snapshot.version,
        snapshot.reports_received,
        snapshot.rejected,
    )


async def test_the_verdict_list_is_encoded_once_per_judging(collector: CollectorService) -> None:
    await send(collector, report(name="node-0"))
    await collector.observe()
    url = f"http://127.0.0.1:{collector.http_port}/api/v1/verdicts"

    async def poll() -> str:
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            assert response.status == 200
            return await response.text()

    first, again = await poll(), await poll()
    assert collector.web.verdict_encodes == 1
    # Spliced, it is still what json.dumps writes of the whole answer.
    data = collector.verdicts_view()
    whole = {
        "generated_at": json.loads(again)["generated_at"],
        "profile": data.profile_name,
        "kubernetes": {
            "available": data.kube.available,
            "server_version": data.kube.server_version,
            "error": data.kube.error,
        },
        "ready": dict(data.ready),
        "verdicts": [verdict_json(v) for v in data.verdicts],
        "mirrors": [],
    }
    assert again == json.dumps(whole)
    assert json.loads(first)["verdicts"] == json.loads(again)["verdicts"]
    # A judging that changes a verdict is served at the next poll.
    down = pb.EgressResult(target="quay.io", outcome=pb.OUTCOME_DOWN)
    await send(collector, report(name="node-1", egress=[down]))
    await collector.observe()
    after = json.loads(await poll())
    assert collector.web.verdict_encodes == 2
    assert after["verdicts"] == [verdict_json(v) for v in collector.verdicts_view().verdicts]
    assert after["verdicts"] != json.loads(again)["verdicts"]
