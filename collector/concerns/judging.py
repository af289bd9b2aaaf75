"""Concern `judging`: how the collector's own judging and rendering fare.

/metrics: nodes whose data could not be used (their other series are left out), data
errors by surface, judging passes that raised, when the verdicts were last current.
The status page's "Reports unusable" list is part of its layout (collector.statuspage),
since only rendering every section finds the nodes to leave out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from collector.concerns.agents import AGENT_LAST_REPORT, AGENT_UP
from collector.concerns.base import Concern, Sample, counter, gauge
from collector.published import Published
from collector.state import NodeEntry

NODE_UNUSABLE = gauge(
    "preflight_node_report_unusable",
    "1 for a node whose report could not be judged or rendered (its other series are "
    "left out; the reason is on the status page).",
    ("node",),
    True,
)
NODE_DATA_ERRORS = counter(
    "preflight_node_data_errors_total",
    "Times one node's data raised in a surface (rules, metrics, json, status_page); "
    "the other nodes were still rendered.",
    ("surface",),
)
JUDGING_ERRORS = counter(
    "preflight_judging_errors_total", "Judging passes that raised; the supervised loop went on."
)
VERDICTS_TIMESTAMP = gauge(
    "preflight_verdicts_timestamp_seconds",
    "When judging last completed: the time the served verdicts are current as of.",
    (),
    False,
)


def unusable_samples(node: NodeEntry) -> list[Sample]:
    """What is still said of a node whose data cannot be used: it reports, and that's all."""
    return [
        (AGENT_UP, (node.name,), 1.0 if node.up else 0.0),
        (AGENT_LAST_REPORT, (node.name,), node.received_at),
        (NODE_UNUSABLE, (node.name,), 1.0),
    ]


def cluster_samples(view: Published, expiries: Iterable[dict[str, float]]) -> Iterator[Sample]:
    for surface, count in view.faults.counts():
        yield NODE_DATA_ERRORS, (surface,), float(count)
    yield JUDGING_ERRORS, (), float(view.judging_errors)
    yield VERDICTS_TIMESTAMP, (), view.judged_at


CONCERN = Concern(
    name="judging",
    families=(NODE_UNUSABLE, NODE_DATA_ERRORS, JUDGING_ERRORS, VERDICTS_TIMESTAMP),
    cluster_samples=cluster_samples,
)
