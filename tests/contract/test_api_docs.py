"""docs/api.md against a real collector: every JSON example has the fields the API really
returns, and the documented status codes and content types are the real ones."""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path
from typing import Any

import aiohttp
import grpc.aio

from collector.service import CollectorService
from preflight.v1 import report_pb2_grpc as pb_grpc
from tests.support.samples import HOSTILE_NODE, cluster_reports

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
EXAMPLE = re.compile(r"<!-- example: GET (\S+)(.*?) -->\n```json\n(.*?)\n```", re.DOTALL)
# Objects keyed by data (phase names, target names), not by field names.
MAPS = {"ready", "nodes[].egress", "egress"}


def shape(value: Any, path: str = "") -> set[str]:
    """Every field path in a JSON value: `verdicts[].status`, `report.egress[].phases[]`."""
    if isinstance(value, dict):
        if path in MAPS:
            return {path + "{}"}
        found = set()
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            found |= {child} | shape(item, child)
        return found
    if isinstance(value, list):
        found = set()
        for item in value:
            found |= shape(item, path + "[]")
        return found
    return set()


async def feed(collector: CollectorService) -> None:
    reports = [
        r for r in cluster_reports() if r.node_name in ("gpu-node-1", "gpu-node-2", HOSTILE_NODE)
    ]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
        stub = pb_grpc.CollectorStub(channel)
        for report in reports:
            await stub.Report(report, timeout=5)


def examples() -> list[tuple[str, str, Any]]:
    found = [(m[1], m[2], json.loads(m[3])) for m in EXAMPLE.finditer(DOC.read_text())]
    assert {path for path, _, _ in found} >= {
        "/api/v1/verdicts",
        "/api/v1/nodes",
        "/api/v1/nodes/gpu-node-2",
        "/api/v1/nodes/nope",
    }
    return found


async def test_json_examples_match_the_real_api(collector: CollectorService) -> None:
    await feed(collector)
    base = f"http://127.0.0.1:{collector.http_port}"
    async with aiohttp.ClientSession() as session:
        for path, note, documented in examples():
            async with session.get(base + path) as response:
                expected_status = 404 if "(404)" in note else 200
                assert response.status == expected_status, path
                assert response.content_type == "application/json"
                real = await response.json()
            doc_fields, real_fields = shape(documented), shape(real)
            assert doc_fields - real_fields == set(), f"{path}: documented but not returned"
            # The embedded report is trimmed in the docs and grows with the wire contract;
            # every field of the API's own is documented.
            undocumented = {f for f in real_fields - doc_fields if not f.startswith("report.")}
            assert undocumented == set(), f"{path}: returned but not documented"


async def test_status_codes_and_content_types(collector: CollectorService) -> None:
    await feed(collector)
    doc = DOC.read_text()
    base = f"http://127.0.0.1:{collector.http_port}"
    async with aiohttp.ClientSession() as session:
        for path, status, body in (("/healthz", 200, "ok\n"), ("/readyz", 200, "ready\n")):
            async with session.get(base + path) as response:
                assert (response.status, await response.text()) == (status, body)
                assert response.headers["Content-Type"] in doc
        for path in ("/", "/metrics", "/api/v1/verdicts"):
            async with session.get(base + path) as response:
                assert response.status == 200
                assert f"`{response.headers['Content-Type']}`" in doc, path
        async with session.get(base + "/api/v1/nope") as response:
            assert response.status == 404
        async with session.post(base + "/api/v1/verdicts") as response:
            assert response.status == 405
        # Untrusted node names are addressed percent-encoded, as documented.
        quoted = urllib.parse.quote(HOSTILE_NODE, safe="")
        url = f"{base}/api/v1/nodes/{quoted}"
        async with session.get(url) as response:
            assert response.status == 200
            assert (await response.json())["node"] == HOSTILE_NODE
        assert "%3Cimg%20src%3Dx%3E" in doc and "%2F" in doc
