"""Per-report facts a rule derives, computed once per report instead of once per judging.

The service judges every node about once a second while anything changes, but a node's
report changes only when it reports (every heartbeat or on change): reading the same
protobuf fields of 10,000 unchanged reports every second was most of the judging's
CPU. A rule keeps what it derives from one report in a `PerReport`; the aggregate over
the cluster is still computed on every judging, so verdicts are the same as before.

Stored reports are never mutated after acceptance (collector.state), so a report
object stands for its content. The cache holds the reports it was last asked about
(held, so their ids cannot be reused) and drops the others on the next call: it never
grows beyond one entry per node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from preflight.v1 import report_pb2 as pb

T = TypeVar("T")


class PerReport(Generic[T]):
    """`derive(report)` for many reports, reusing the results for reports seen last time."""

    def __init__(self, derive: Callable[[pb.NodeReport], T]) -> None:
        self._derive = derive
        self._cache: dict[int, tuple[pb.NodeReport, T]] = {}
        self.derived = 0  # how many times `derive` ran (tests read it)

    def __call__(self, reports: Iterable[pb.NodeReport]) -> list[T]:
        old = self._cache
        new: dict[int, tuple[pb.NodeReport, T]] = {}
        out: list[T] = []
        derived = 0
        derive = self._derive
        for report in reports:
            hit = old.get(id(report))
            if hit is None or hit[0] is not report:
                hit = (report, derive(report))
                derived += 1
            new[id(report)] = hit
            out.append(hit[1])
        # Replaced whole, never mutated in place: a concurrent caller (a `preflight
        # check` in another thread) sees one complete cache or the other.
        self._cache = new
        self.derived += derived
        return out
