"""Prints real responses for docs/api.md: `python -m tests.support.api_examples`.

Starts an in-process collector on loopback, feeds it the sample reports of
tests.support.samples over gRPC (three rounds, so hysteresis has confirmed the
failures) and prints every endpoint's status, content type and pretty JSON. Paste
the output into docs/api.md when the API gains fields (the drift test in
tests/contract/test_api_docs.py says which).
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import grpc.aio

from collector.config import CollectorConfig, KubernetesConfig, ListenConfig
from collector.service import CollectorService
from preflight.v1 import report_pb2_grpc as pb_grpc
from tests.support.samples import cluster_reports

PATHS = ("/api/v1/verdicts", "/api/v1/nodes", "/api/v1/nodes/gpu-node-2", "/api/v1/nodes/nope")


async def main() -> None:
    service = CollectorService(
        CollectorConfig(
            listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"),
            kubernetes=KubernetesConfig(mode="none"),
        )
    )
    await service.start()
    base = f"http://127.0.0.1:{service.http_port}"
    reports = [r for r in cluster_reports() if r.node_name in ("gpu-node-1", "gpu-node-2")]
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel,
            aiohttp.ClientSession() as session,
        ):
            stub = pb_grpc.CollectorStub(channel)
            for sequence in (1, 2, 3):
                for report in reports:
                    report.sequence = sequence
                    report.sent_at.GetCurrentTime()
                    await stub.Report(report, timeout=5)
                # One observation per round, as the collector's once-a-second judging makes
                # it: failures are confirmed by hysteresis over consecutive observations.
                await service.observe()
            for path in PATHS:
                async with session.get(base + path) as response:
                    body = await response.json()
                    print(f"===== GET {path} → {response.status} {response.content_type}")
                    print(json.dumps(body, indent=2, ensure_ascii=False))
    finally:
        await service.stop()


if __name__ == "__main__":
    asyncio.run(main())
