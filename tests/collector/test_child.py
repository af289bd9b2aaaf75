"""A helper process (collector/child.py): its CPU priority, a new generation per child."""

from __future__ import annotations

import os
import time

import pytest

from collector import child as child_module
from collector.encoder import ENCODER_NICENESS, EncoderProcess
from collector.judging_process import JudgingProcess


def _priority_settles_at(pid: int, expected: int) -> bool:
    # A child sets its priority once it has imported (about a second here).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if os.getpriority(os.PRIO_PROCESS, pid) == expected:
            return True
        time.sleep(0.05)
    return False


def test_the_judging_child_runs_behind_the_collector_and_the_encoder_beside_it() -> None:
    # Judging may wait; a scrape waits for the encoder, so it is not put behind ingest.
    judging, encoder = JudgingProcess(), EncoderProcess()
    try:
        judging.child.start()
        assert encoder.encode([]) == []  # started, imported, answered
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert judging.child.pid is not None and encoder.child.pid is not None
        behind = min(19, ours + child_module.CHILD_NICENESS)
        assert _priority_settles_at(judging.child.pid, behind)
        assert os.getpriority(os.PRIO_PROCESS, encoder.child.pid) == ours + ENCODER_NICENESS == ours
    finally:
        judging.close()
        encoder.close()


def test_each_child_started_is_a_new_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(child_module, "RESTART_AFTER_SECONDS", 0.0)
    encoder = EncoderProcess()
    try:
        assert encoder.encode([]) == []
        assert encoder.child.generation == 1
        # An answer the caller does not accept: the child is not trusted again.
        assert encoder.child.call([], 5.0, lambda answer: False) is None
        assert (encoder.child.failures, encoder.child.pid) == (1, None)
        assert encoder.encode([]) == []
        assert encoder.child.generation == 2
    finally:
        encoder.close()
