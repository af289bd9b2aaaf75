"""ReportClient over agent.wire against a real collector: a bug in a call never ends delivery."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from agent.client import ReportClient
from collector.config import CollectorConfig, KubernetesConfig, ListenConfig
from collector.service import CollectorService
from preflight.v1 import report_pb2 as pb


async def test_an_unexpected_error_is_a_failed_call_then_delivery_resumes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = CollectorService(
        CollectorConfig(
            listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"),
            kubernetes=KubernetesConfig(mode="none"),
        )
    )
    await service.start()
    acks: list[pb.ReportAck] = []
    client = ReportClient(
        f"127.0.0.1:{service.grpc_port}", timeout=2, max_backoff=0.5, on_ack=acks.append
    )
    real = client._channel.unary
    calls = 0

    async def flaky(*args: Any, **kwargs: Any) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug below the client")
        return await real(*args, **kwargs)

    client._channel.unary = flaky  # type: ignore[method-assign]
    sender = asyncio.create_task(client.run())
    try:
        with caplog.at_level(logging.ERROR, logger="agent.client"):
            client.submit(pb.NodeReport(node_name="node-a", instance_id="i", sequence=1))
            deadline = time.monotonic() + 10
            while not acks:
                assert time.monotonic() < deadline, "not delivered after the failure"
                await asyncio.sleep(0.05)
    finally:
        sender.cancel()
        await client.close()
        await service.stop()
    assert calls == 2 and client.delivered == 1
    assert "failed unexpectedly" in caplog.text and "a bug below the client" in caplog.text
