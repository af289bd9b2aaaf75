"""The registry of collector concerns: the one list /metrics, the JSON API and the page iterate.

Each concern (collector/concerns/<name>.py) owns its metric families (named constants),
its per-node and cluster-wide samples, its fields of the node JSON and its status-page
sections. `CONCERNS` is the exposition order: /metrics lists every concern's families in
turn, so a concern's families stay together. `PAGE` is the status page's order, which
reads by what a person needs first, not by family. Adding a probe kind on the collector:
its module here and its entries below; see docs/architecture.md.
"""

from __future__ import annotations

from collector.concerns import (
    agents,
    capacity,
    clock,
    cluster,
    egress,
    gpu_operator,
    judging,
    mounts,
    node,
)
from collector.concerns.base import Concern, Family, NodeJson, Page, Sample, Section

__all__ = [
    "CONCERNS",
    "FAMILIES",
    "PAGE",
    "Concern",
    "Family",
    "NodeJson",
    "Page",
    "Sample",
    "Section",
]

# Exposition order.
CONCERNS: tuple[Concern, ...] = (
    cluster.CONCERN,
    agents.CONCERN,
    egress.CONCERN,
    node.CONCERN,
    clock.CONCERN,
    gpu_operator.CONCERN,
    mounts.CONCERN,
    judging.CONCERN,
    capacity.CONCERN,
)
FAMILIES: tuple[Family, ...] = tuple(f for c in CONCERNS for f in c.families)

# Status-page order: the verdicts first, then the per-node tables.
PAGE: tuple[Section, ...] = (
    cluster.READINESS,
    cluster.REQUIREMENTS,
    egress.MATRIX,
    node.CAPACITY,
    capacity.GPU_CAPACITY,
    agents.NODES,
    mounts.SHARED_VOLUME,
)
