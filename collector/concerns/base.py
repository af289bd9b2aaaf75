"""What a collector concern is: its metric families and samples, its JSON, its page sections.

A concern is one thing the collector reports on (the agents, egress, the node's facts,
mounts...). It owns everything each output says about it, so a new probe kind adds one
module and one registry entry (collector/concerns/__init__.py) instead of an edit in
/metrics, the JSON API and the status page each. The outputs only iterate the registry:
exposition.py joins families and samples, web.py merges node JSON, statuspage.py lays out
sections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from collector.kube.facts import KubeNode
from collector.plan import PlanIndex
from collector.published import Published
from collector.state import NodeEntry


# eq=False: a family is its own identity (fast dict keys, one object per family).
@dataclass(frozen=True, eq=False)
class Family:
    """One metric family as exposed; `name` is the sample name (with `_total`)."""

    name: str
    type: str  # "gauge" or "counter"
    help: str
    labels: tuple[str, ...]
    per_node: bool

    @cached_property
    def header(self) -> bytes:
        doc = self.help.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {self.name} {doc}\n# TYPE {self.name} {self.type}\n".encode()

    @cached_property
    def line_format(self) -> str:
        """One sample line as a %-format: 'name{a="%s",b="%s"} %s\n', labels sorted."""
        labels = ",".join(f'{label}="%s"' for label, _ in self.sorted_labels)
        return f"{self.name}{{{labels}}} %s\n" if labels else f"{self.name} %s\n"

    @cached_property
    def label_order(self) -> tuple[int, ...]:
        """Positions of the label values in line_format's order (prometheus_client sorts)."""
        return tuple(position for _, position in self.sorted_labels)

    @cached_property
    def sorted_labels(self) -> tuple[tuple[str, int], ...]:
        """Label names in sorted order with their position: prometheus_client sorts them."""
        return tuple(sorted((label, position) for position, label in enumerate(self.labels)))


def gauge(name: str, doc: str, labels: Iterable[str], per_node: bool) -> Family:
    return Family(name, "gauge", doc, tuple(labels), per_node)


def counter(name: str, doc: str, labels: Iterable[str] = ()) -> Family:
    """A cluster-wide counter (`name` ends in `_total`)."""
    return Family(name, "counter", doc, tuple(labels), False)


# (family, label values in the family's label order, value)
Sample = tuple[Family, tuple[str, ...], float]
# One node's series: (node, its allocatable GPUs from Kubernetes, the plan version the
# collector gives it; None where not known).
NodeSamples = Callable[[NodeEntry, int | None, str | None], Iterator[Sample]]
# The cluster-wide series; the iterable holds every node's certificate expiries (the one
# per-node aggregate, cached with the node's text: see collector.concerns.egress).
ClusterSamples = Callable[[Published, Iterable[dict[str, float]]], Iterator[Sample]]


@dataclass(frozen=True)
class NodeJson:
    """What a node's JSON contribution may read besides the node."""

    now: float
    plans: PlanIndex = field(default_factory=PlanIndex)
    mirror_of: Mapping[str, str] = field(default_factory=dict)


NodeFields = Callable[[NodeEntry, NodeJson], dict[str, Any]]


@dataclass(frozen=True)
class Page:
    """What a status-page section may read: the view and what the page derived once."""

    data: Published
    kube_nodes: Mapping[str, KubeNode]  # by name; empty without the Kubernetes API
    without_agent: tuple[KubeNode, ...]  # Kubernetes nodes no agent reports for

    @property
    def now(self) -> float:
        return self.data.state.taken_at


@dataclass(frozen=True)
class Section:
    """One part of the status page.

    `render(page, nodes)` returns its HTML. A `per_node` section draws the nodes it is
    given (the usable ones); when it raises, the page finds the node to blame and leaves
    that node out of every section (statuspage._per_node_sections). Other sections draw
    from verdicts and are rendered once, above the node sections. `nav` is the header
    link text to `#anchor` ("" for none).
    """

    anchor: str
    render: Callable[[Page, tuple[NodeEntry, ...]], str]
    nav: str = ""
    per_node: bool = True


@dataclass(frozen=True)
class Concern:
    """One concern's parts; every one optional but its name and families."""

    name: str
    families: tuple[Family, ...]
    node_samples: NodeSamples | None = None
    cluster_samples: ClusterSamples | None = None
    # Fields of /api/v1/nodes (summary) and, added to it, /api/v1/nodes/{node} (detail).
    summary: NodeFields | None = None
    detail: NodeFields | None = None
    sections: tuple[Section, ...] = ()
