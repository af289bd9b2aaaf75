"""Fixtures for every test: a real collector in-process (helpers live in tests/support)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from collector.config import CollectorConfig, LimitsConfig, ListenConfig
from collector.service import CollectorService


@pytest.fixture
async def collector() -> AsyncIterator[CollectorService]:
    """A real collector on loopback with small limits, short heartbeat."""
    config = CollectorConfig(
        listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"),
        heartbeat_interval=1.0,
        limits=LimitsConfig(
            max_message_bytes=64 * 1024, max_targets=8, max_mounts=4, max_node_name_length=63
        ),
    )
    service = CollectorService(config)
    await service.start()
    yield service
    await service.stop()
