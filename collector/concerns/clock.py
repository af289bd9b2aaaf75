"""Concern `clock`: the kernel's NTP state as the agent's `clock` probe read it (adjtimex).

/metrics: synchronised, estimated and maximum error, for agents that could read it. The
skew to the collector's clock belongs to `agents` (the collector measures it); the
clock_sync rule judges both.
"""

from __future__ import annotations

from collections.abc import Iterator

from collector.concerns.base import Concern, Sample, gauge
from collector.state import NodeEntry

NODE_CLOCK_SYNCHRONISED = gauge(
    "preflight_node_clock_synchronised",
    "1 when the node's kernel reports its clock NTP-synchronised (adjtimex).",
    ("node",),
    True,
)
NODE_CLOCK_ESTIMATED_ERROR = gauge(
    "preflight_node_clock_estimated_error_seconds",
    "The kernel's estimated clock error (adjtimex esterror).",
    ("node",),
    True,
)
NODE_CLOCK_MAX_ERROR = gauge(
    "preflight_node_clock_max_error_seconds",
    "The kernel's maximum clock error (adjtimex maxerror).",
    ("node",),
    True,
)


def node_samples(
    node: NodeEntry, allocatable_gpus: int | None, expected_plan: str | None
) -> Iterator[Sample]:
    report = node.report
    if report.HasField("clock") and report.clock.available:
        name = node.name
        clock = report.clock
        yield NODE_CLOCK_SYNCHRONISED, (name,), 1.0 if clock.synchronised else 0.0
        yield NODE_CLOCK_ESTIMATED_ERROR, (name,), clock.estimated_error_seconds
        yield NODE_CLOCK_MAX_ERROR, (name,), clock.maximum_error_seconds


CONCERN = Concern(
    name="clock",
    families=(NODE_CLOCK_SYNCHRONISED, NODE_CLOCK_ESTIMATED_ERROR, NODE_CLOCK_MAX_ERROR),
    node_samples=node_samples,
)
