"""Shared test helpers: free ports, a collector in-process, metrics parsing."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.config import CollectorConfig, LimitsConfig, ListenConfig
from collector.service import CollectorService


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Samples:
    """Sample name + sorted labels → value."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def scrape(url: str) -> Samples:
    """Blocking scrape: only for collectors running in another process."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return parse_metrics(response.read().decode())


async def ascrape(url: str) -> Samples:
    """Scrape from inside the event loop that may be serving the collector itself."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return parse_metrics(await response.text())


def sample(
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float | None:
    return metrics.get((name, tuple(sorted(labels.items()))))


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
