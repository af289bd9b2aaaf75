"""What rules see and what they return: plain, immutable data (no I/O, no frameworks)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from collector.kube.facts import STANDALONE, KubeFacts
from collector.kube.platform_facts import PlatformFacts
from collector.state import AgentReports, NodeEntry
from preflight.profile import Profile

Status = Literal["pass", "warn", "fail", "unknown"]
STATUSES: tuple[Status, ...] = ("pass", "warn", "fail", "unknown")


@dataclass(frozen=True)
class Verdict:
    requirement: str
    status: Status
    reason: str
    nodes: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    # (node, note) the rule has to say about single nodes, for outputs that show nodes
    # (the status page's cells) without judging them again.
    node_notes: tuple[tuple[str, str], ...] = ()
    # Unix seconds since which the requirement has been in `status` (set by hysteresis).
    since: float | None = None


@dataclass(frozen=True)
class Evidence:
    """Everything a rule may look at: agent state, the Kubernetes view, the profile, the time."""

    state: AgentReports
    profile: Profile
    now: float
    kube: KubeFacts = STANDALONE
    # The collector's `cluster_domain` setting ("" = not configured).
    cluster_domain: str = ""
    # Target name → host:port of its mirror (collector setting `mirrors`), for reasons.
    mirror_of: tuple[tuple[str, str], ...] = ()

    @cached_property
    def entries(self) -> dict[str, NodeEntry]:
        """Agent entries by node name (AgentReports.node scans; rules over all nodes use this)."""
        return {n.name: n for n in self.state.nodes}

    @cached_property
    def live_nodes(self) -> tuple[NodeEntry, ...]:
        """The nodes whose agent reports in time (once per view: most rules read it)."""
        return tuple(n for n in self.state.nodes if n.up)

    def unknown_without_kubernetes(self, requirement: str) -> Verdict | None:
        """The `unknown` verdict of a Kubernetes-backed rule when the API cannot be read."""
        if self.kube.available:
            return None
        return Verdict(requirement, "unknown", f"Kubernetes API: {self.kube.error}")

    def platform_or_unknown(self, requirement: str) -> PlatformFacts | Verdict:
        """The add-on facts a rule judges, or its `unknown` verdict when there are none."""
        unknown = self.unknown_without_kubernetes(requirement)
        if unknown:
            return unknown
        if self.kube.platform is None:
            return Verdict(requirement, "unknown", "cluster add-ons were not read")
        return self.kube.platform


def count(n: int, noun: str) -> str:
    """`1 node`, `2 nodes`: reasons are read by people."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def names(items: list[str] | tuple[str, ...], limit: int = 5) -> str:
    """`a, b, c and 4 more` — keeps one-line reasons short on big clusters."""
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"
