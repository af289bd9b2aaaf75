"""Pre-encoded /metrics text (Exposition.prepare) is exactly what a fresh render writes.

The service pre-encodes the nodes that reported about once a second while someone
scrapes; a scrape then joins cached text. Property: after any sequence of reports,
staleness, departures, unusable marks and pre-encodings, the cached render is byte for
byte a fresh Exposition's render of the same view, and after `prepare` a render of the
same view formats no node again.
"""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.config import CollectorConfig, LimitsConfig, ListenConfig
from collector.exposition import Exposition
from collector.published import Published
from collector.service import (
    PREPARE_LEAD_SECONDS,
    PREPARE_WHILE_SCRAPED_SECONDS,
    CollectorService,
)
from collector.state import ClusterState
from preflight.v1 import report_pb2 as pb
from tests.support.builders import T0, egress_down, egress_up, hardware, ts

NAMES = ("n0", "n1", "n2", 'n"3\\')
HEARTBEAT = 30.0

_step = st.one_of(
    # (kind, node, detail)
    st.tuples(st.just("report"), st.sampled_from(NAMES), st.integers(0, 3)),
    st.tuples(st.just("wait"), st.just(""), st.sampled_from([1, 40, 100, 400])),
    st.tuples(st.just("unusable"), st.sampled_from(NAMES), st.just(0)),
    st.tuples(st.just("prepare"), st.just(""), st.just(0)),
)


def _report(name: str, shape: int, sequence: int, now: float) -> pb.NodeReport:
    message = pb.NodeReport(
        node_name=name,
        instance_id="i",
        sequence=sequence,
        sent_at=ts(now),
        hardware=hardware(8 * (shape + 1), 2**30),
        gpus=pb.GpuFacts(pci_count=shape, driver_count=shape),
    )
    if shape % 2:
        message.egress.append(egress_down("t", pb.REASON_DNS_NXDOMAIN, [pb.PHASE_RESOLVE]))
    else:
        message.egress.append(egress_up("t", not_after=T0 + 86400 * (shape + 1)))
    return message


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(_step, min_size=1, max_size=20))
def test_pre_encoded_text_equals_a_fresh_render(steps: list[tuple[str, str, int]]) -> None:
    state = ClusterState(LimitsConfig(report_burst=10**6), HEARTBEAT, 3, 300.0)
    cached = Exposition()
    now = T0
    sequence = 0
    unusable: tuple[tuple[str, str], ...] = ()
    for kind, name, detail in steps:
        if kind == "report":
            sequence += 1
            state.accept(_report(name, detail, sequence, now), now)
        elif kind == "wait":
            now += detail
        elif kind == "unusable":
            unusable = tuple(sorted({*unusable, (name, "gpu_nodes: boom")}))
        view = Published(state=state.snapshot(now), verdicts=(), ready=(), unusable=unusable)
        if kind == "prepare":
            cached.prepare(view)
            misses = cached.misses
            assert cached.render(view) == Exposition().render(view)
            assert cached.misses == misses  # everything came from the pre-encoded cache
        else:
            assert cached.render(view) == Exposition().render(view)


async def test_the_service_pre_encodes_only_while_scraped() -> None:
    config = CollectorConfig(listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"))
    service = CollectorService(config)
    now = time.time()
    service.state.accept(_report("n0", 0, 1, now), now)
    # Just started, not scraped yet: the start counts as a scrape (the first real one,
    # right after a restart, finds the text formatted).
    assert await service.prepare_metrics()
    assert service.exposition.misses == 1
    # Long after the start and never scraped: nothing is formatted ahead.
    service._created -= PREPARE_WHILE_SCRAPED_SECONDS + 1
    service.state.accept(_report("n1", 0, 2, now), now)
    assert not await service.prepare_metrics()
    assert service.exposition.misses == 1
    # A scrape now: the changed node is formatted ahead.
    service.web.last_scrape = time.monotonic()
    assert await service.prepare_metrics()
    assert service.exposition.misses == 2
    # A scrape long ago (beyond PREPARE_WHILE_SCRAPED_SECONDS) no longer counts.
    service.web.last_scrape = time.monotonic() - PREPARE_WHILE_SCRAPED_SECONDS - 1
    assert not await service.prepare_metrics()


async def test_with_a_known_scrape_interval_the_service_formats_just_before_the_scrape() -> None:
    config = CollectorConfig(listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"))
    service = CollectorService(config)
    now = time.time()
    interval = 60.0
    # Scraped every 60 s, the last one 10 s ago: the next is due in 50 s.
    service.web.scrape_gaps.extend([interval, interval])
    service.web.last_scrape = time.monotonic() - 10.0
    for sequence in range(1, 4):
        service.state.accept(_report("n0", sequence % 2, sequence, now), now)
        assert not await service.prepare_metrics()
    assert service.exposition.misses == 0
    # Within PREPARE_LEAD_SECONDS of it: formatted once, for the three reports.
    service.web.last_scrape = time.monotonic() - interval + PREPARE_LEAD_SECONDS / 2
    assert await service.prepare_metrics()
    assert service.exposition.misses == 1
    # A pre-encoding that took long (most nodes changed since the last scrape, at a high
    # report rate) starts the next one earlier, by twice its time.
    service.prepare_took = 5.0
    service.web.last_scrape = time.monotonic() - interval + PREPARE_LEAD_SECONDS + 8.0
    service.state.accept(_report("n0", 1, 5, now), now)
    assert await service.prepare_metrics()
    assert service.exposition.misses == 2
    service.prepare_took = 0.0
    # A scrape due later than the shortest gap says is still prepared for on time (two
    # Prometheus servers at different offsets: gaps of 50 and 10 s).
    service.web.scrape_gaps.extend([50.0, 10.0])
    service.web.last_scrape = time.monotonic() - 10.0 + PREPARE_LEAD_SECONDS / 2
    service.state.accept(_report("n1", 0, 9, now), now)
    assert await service.prepare_metrics()
    assert service.exposition.misses == 3
