"""What rules see and what they return: plain, immutable data (no I/O, no frameworks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from collector.profile import Profile
from collector.state import NodeEntry, StateSnapshot

Status = Literal["pass", "warn", "fail", "unknown"]
STATUSES: tuple[Status, ...] = ("pass", "warn", "fail", "unknown")


@dataclass(frozen=True)
class Verdict:
    requirement: str
    status: Status
    reason: str
    nodes: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    # Unix seconds since which the requirement has been in `status` (set by hysteresis).
    since: float | None = None


@dataclass(frozen=True)
class ClusterView:
    """Everything a rule may look at: agent state, the profile, the time."""

    state: StateSnapshot
    profile: Profile
    now: float
    kubernetes_reason: str = "standalone: no Kubernetes API configured"
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def live_nodes(self) -> tuple[NodeEntry, ...]:
        return tuple(n for n in self.state.nodes if n.up)


def names(items: list[str] | tuple[str, ...], limit: int = 5) -> str:
    """`a, b, c and 4 more` — keeps one-line reasons short on big clusters."""
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"
