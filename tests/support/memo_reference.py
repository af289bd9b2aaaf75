"""The rules' per-report cache (collector/rules/memo.py) as on main, kept as the reference.

A property test (tests/collector/test_rules_reference.py) checks that the collector's
fast paths give the same verdicts as this, reasons and evidence included, for random
reports and histories. Not used by the collector.

Original module docstring follows.

Per-report facts a rule derives, computed once per report instead of once per judging.

The service judges every node about once a second while anything changes, but a node's
report changes only when it reports (every heartbeat or on change): decoding 10,000
stored reports (collector.state keeps their bytes) and reading the same fields every
second would be most of the judging's CPU. A rule keeps what it derives from one report
in a `PerReport`; the aggregate over the cluster is still computed on every judging, so
verdicts are the same as before.

The cache is keyed by the entry's report bytes (`NodeEntry.raw`): bytes are immutable,
so they stand for the report's content, and a report is decoded only when its bytes
were not seen on the previous call. Python keeps the hash of a bytes object, and a
lookup of the very object compares identity first, so a hit costs a dict lookup. The
cache holds the reports it was last asked about and drops the others on the next call:
it never grows beyond one entry per node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar, cast

from collector.state import NodeEntry
from preflight.v1 import report_pb2 as pb

T = TypeVar("T")
_MISSING = object()  # derive may return None


class PerReport(Generic[T]):
    """`derive(entry.report)` for many entries, reusing the results for reports seen last time."""

    def __init__(self, derive: Callable[[pb.NodeReport], T]) -> None:
        self._derive = derive
        self._cache: dict[bytes, T] = {}
        self.derived = 0  # how many times `derive` ran (tests read it)

    def __call__(self, entries: Iterable[NodeEntry]) -> list[T]:
        old = self._cache
        new: dict[bytes, T] = {}
        out: list[T] = []
        derived = 0
        derive = self._derive
        for entry in entries:
            raw = entry.raw
            hit = old.get(raw, _MISSING)
            if hit is _MISSING:
                value = derive(entry.report)
                derived += 1
            else:
                value = cast(T, hit)
            new[raw] = value
            out.append(value)
        # Replaced whole, never mutated in place: a concurrent caller (a `preflight
        # check` in another thread) sees one complete cache or the other.
        self._cache = new
        self.derived += derived
        return out
