"""One node's data never breaks another's output: faults are caught per node and counted.

Validation (collector.validation) should make every stored report safe to judge and
render; this is the second line. Each surface (rules, /metrics, JSON, the status
page) handles one node at a time through `FaultLog.guard`: when that raises, the
node is shown as "report unusable" with the reason, the fault is counted in
`preflight_node_data_errors_total{surface}`, and every other node is still rendered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

SURFACES = ("rules", "metrics", "json", "status_page")
LOG_EVERY_SECONDS = 60.0

T = TypeVar("T")


def describe(error: BaseException) -> str:
    """A short, label-free reason: the exception type and the start of its message."""
    text = str(error).replace("\n", " ")[:120]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class FaultLog:
    """Thread-safe fault counts per surface (renderers run in worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(SURFACES, 0)
        self._logged: dict[str, float] = {}

    def record(self, surface: str, node: str, error: BaseException) -> str:
        """Counts one fault; returns the reason to show. Logs at most once a minute per surface."""
        now = time.monotonic()
        with self._lock:
            self._counts[surface] = self._counts.get(surface, 0) + 1
            quiet = now - self._logged.get(surface, -LOG_EVERY_SECONDS) < LOG_EVERY_SECONDS
            if not quiet:
                self._logged[surface] = now
        if not quiet:
            log.error("%s: data of node %r unusable", surface, node[:64], exc_info=error)
        return describe(error)

    def guard(
        self, surface: str, node: str, build: Callable[[], T], fallback: Callable[[str], T]
    ) -> T:
        """`build()`, or `fallback(reason)` when it raises (counted)."""
        try:
            return build()
        except Exception as error:
            return fallback(self.record(surface, node, error))

    def add(self, surface: str, faults: int) -> None:
        """Counts faults found, and logged, elsewhere (collector.encoder's child process)."""
        if faults:
            with self._lock:
                self._counts[surface] = self._counts.get(surface, 0) + faults

    def counts(self) -> tuple[tuple[str, int], ...]:
        with self._lock:
            return tuple(self._counts.items())
