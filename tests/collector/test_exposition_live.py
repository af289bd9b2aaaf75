"""`promtool check metrics` on a live /metrics: a real collector fed over gRPC.

Also checks that a scrape renders from the node cache: a second scrape with no new
report re-renders no node, and a node that reports again is the only one re-rendered.
"""

from __future__ import annotations

import shutil
import subprocess

import aiohttp
import grpc.aio
import pytest

from collector.service import CollectorService
from preflight.v1 import report_pb2 as pb
from preflight.v1 import report_pb2_grpc as pb_grpc
from tests.support.builders import egress_down, egress_up, hardware, mount
from tests.support.promql import PROMTOOL_MISSING


def node_report(name: str, sequence: int, broken: bool) -> pb.NodeReport:
    report = pb.NodeReport(
        node_name=name,
        agent_version="0.1.0",
        instance_id=f"{name}-instance",
        sequence=sequence,
        hardware=hardware(8, 32 * 2**30),
        gpus=pb.GpuFacts(pci_count=2, driver_count=2),
        egress=[egress_up("hub.docker.com", not_after=2e9), egress_up("quay.io", proxy=True)],
        mounts=[mount("/mnt/shared", pb.MOUNT_STATE_MOUNTED, pb.WRITE_CHECK_OK, 1)],
    )
    report.sent_at.GetCurrentTime()
    if broken:
        cert = pb.Certificate(issuer="CN=Inspecting Proxy CA,O=Corp", sha256_fingerprint="ab" * 32)
        report.egress.append(
            egress_down("gcr.io/run-ai-prod", pb.REASON_TLS_UNTRUSTED, [pb.PHASE_TLS], cert)
        )
    return report


async def scrape_text(service: CollectorService) -> str:
    url = f"http://127.0.0.1:{service.http_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return await response.text()


async def test_live_metrics_pass_promtool(collector: CollectorService) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip(PROMTOOL_MISSING)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
        stub = pb_grpc.CollectorStub(channel)
        for i in range(3):
            await stub.Report(node_report(f"node-{i}", 1, broken=i == 2), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Report(pb.NodeReport(node_name=" "), timeout=5)  # counted rejection
        text = await scrape_text(collector)
        assert 'issuer="Inspecting Proxy CA"' in text
        assert 'preflight_reports_rejected_total{reason="node_name_empty"} 1.0' in text
        result = subprocess.run(
            [promtool, "check", "metrics"],
            input=text.encode(),
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
        assert result.stdout.strip() == b"" and result.stderr.strip() == b""

        # The web layer renders through the service's own node cache.
        cache = collector.exposition
        hits, misses = cache.hits, cache.misses

        def timeless(body: str) -> str:
            # The one series that moves with time alone (once a second, as judging completes).
            return "\n".join(
                line
                for line in body.split("\n")
                if not line.startswith("preflight_verdicts_timestamp_seconds ")
            )

        assert timeless(await scrape_text(collector)) == timeless(text)
        # Unchanged inputs: the same body again (0 renders), or — when a judging pass in
        # between moved preflight_verdicts_timestamp_seconds — a render from the cache.
        assert cache.misses - misses == 0 and cache.hits - hits in (0, 3)
        hits = cache.hits
        await stub.Report(node_report("node-0", 2, broken=True), timeout=5)
        changed = await scrape_text(collector)
        assert (cache.hits - hits, cache.misses - misses) == (2, 1)
        assert 'node="node-0",target="gcr.io/run-ai-prod"} 1.0' in changed
