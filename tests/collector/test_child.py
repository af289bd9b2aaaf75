"""A helper process (collector/child.py): lower CPU priority, a new generation per child."""

from __future__ import annotations

import os

import pytest

from collector import child as child_module
from collector.encoder import EncoderProcess


def test_a_child_runs_behind_the_collector_for_the_cpu() -> None:
    encoder = EncoderProcess()
    try:
        assert encoder.encode([]) == []  # started, imported, answered
        pid = encoder.child.pid
        assert pid is not None
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, ours + child_module.CHILD_NICENESS)
    finally:
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
