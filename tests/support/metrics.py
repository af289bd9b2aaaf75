"""Prometheus text from a collector: parse, scrape (blocking or from the event loop), look up."""

from __future__ import annotations

import urllib.request

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

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
