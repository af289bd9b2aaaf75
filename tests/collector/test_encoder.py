"""The /metrics encoder process (collector/encoder.py) writes what the collector would.

A real child process (`python -m collector.encoder`) over a real socket pair: its text
is byte for byte an in-process render of the same view, a node whose data cannot be
formatted is counted once in the parent, and a child that dies or stops answering is
replaced while the parent formats in process, so no scrape is left without its text.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector import child as child_module
from collector import encoder as encoder_module
from collector.config import CollectorConfig, LimitsConfig, ListenConfig
from collector.encoder import EncoderProcess
from collector.exposition import Exposition
from collector.isolation import FaultLog
from collector.published import Published
from collector.service import CollectorService
from collector.state import ClusterState, NodeEntry
from tests.collector.test_exposition_prepare import HEARTBEAT, NAMES, _report
from tests.support.builders import T0


@pytest.fixture(scope="module")
def encoder() -> Iterator[EncoderProcess]:
    process = EncoderProcess()
    process.start()
    yield process
    process.close()


def _view(reports: list[tuple[str, int]], now: float, **kw: object) -> Published:
    state = ClusterState(LimitsConfig(report_burst=10**6), HEARTBEAT, 3, 300.0)
    for sequence, (name, shape) in enumerate(reports, 1):
        state.accept(_report(name, shape, sequence, now), now)
    return Published(state=state.snapshot(now + 1), verdicts=(), ready=(), **kw)  # type: ignore[arg-type]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    reports=st.lists(st.tuples(st.sampled_from(NAMES), st.integers(0, 3)), max_size=8),
    marked=st.sets(st.sampled_from(NAMES)),
)
def test_the_child_writes_what_the_collector_would(
    encoder: EncoderProcess, reports: list[tuple[str, int]], marked: set[str]
) -> None:
    unusable = tuple(sorted((name, "gpu_nodes: boom") for name in marked))
    view = _view(reports, T0, unusable=unusable)
    batches = encoder.child.calls
    assert Exposition(encoder).render(view) == Exposition().render(view)
    # Formatted by the child (one batch when any node was to be formatted).
    assert encoder.child.calls == batches + (1 if view.state.nodes else 0)


def test_a_fault_in_the_child_is_counted_once_in_the_parent(encoder: EncoderProcess) -> None:
    good = _view([("n0", 1)], T0)
    # Bytes no report decodes from: formatting this node raises (wherever it runs).
    broken = NodeEntry(
        name="n9", raw=b"\xff\xff\xff", received_at=T0, clock_skew_seconds=0.0, first_seen=T0
    )
    state = good.state
    here = Published(
        state=dataclasses.replace(state, nodes=(*state.nodes, broken)),
        verdicts=(),
        ready=(),
        faults=FaultLog(),
    )
    there = Published(state=here.state, verdicts=(), ready=(), faults=FaultLog())
    text = Exposition().render(here)
    assert Exposition(encoder).render(there) == text
    assert b'preflight_node_report_unusable{node="n9"} 1.0' in text
    assert dict(there.faults.counts())["metrics"] == dict(here.faults.counts())["metrics"] >= 1


def test_a_dead_child_is_replaced_and_nothing_is_lost_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    process = EncoderProcess()
    try:
        view = _view([("n0", 0), ("n1", 1)], T0)
        expected = Exposition().render(view)
        assert Exposition(process).render(view) == expected
        first = process.child.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        # The next batch finds it gone: formatted in process, same bytes, one failure.
        assert Exposition(process).render(view) == expected
        assert process.child.failures == 1
        assert process.child.pid is None
        # Within RESTART_AFTER_SECONDS no new child: in process again, no new failure.
        assert Exposition(process).render(view) == expected
        assert (process.child.failures, process.child.pid) == (1, None)
        monkeypatch.setattr(child_module, "RESTART_AFTER_SECONDS", 0.0)
        batches = process.child.calls
        assert Exposition(process).render(view) == expected
        assert process.child.pid not in (None, first)
        assert process.child.calls == batches + 1
    finally:
        process.close()


def test_a_child_that_stops_answering_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    process = EncoderProcess()
    try:
        view = _view([("n0", 0)], T0)
        expected = Exposition().render(view)
        assert Exposition(process).render(view) == expected  # started and answered once
        pid = process.child.pid
        assert pid is not None
        monkeypatch.setattr(encoder_module, "ANSWER_SECONDS", 0.5)
        os.kill(pid, signal.SIGSTOP)
        assert Exposition(process).render(view) == expected
        assert (process.child.failures, process.child.pid) == (1, None)
        # Killed, not left stopped: it is gone (reaped by close's wait).
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        process.close()


async def test_the_service_formats_in_its_encoder_and_stops_it() -> None:
    config = CollectorConfig(listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"))
    encoder = EncoderProcess()
    service = CollectorService(config, metrics_encoder=encoder)
    await service.start()
    try:
        pid = encoder.child.pid
        assert pid is not None
        now = time.time()
        service.state.accept(_report("n0", 0, 1, now), now)
        assert await service.prepare_metrics()
        assert encoder.child.calls >= 1
        view = service.current_view()
        assert service.exposition.render(view) == Exposition().render(view)
    finally:
        await service.stop()
    assert encoder.child.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
