"""One immutable view of the collector at an instant: what every output renders from.

/metrics, the JSON API and the status page all read a Published; none of them
touches live state, so rendering can run in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from collector.isolation import FaultLog
from collector.kube.facts import STANDALONE, KubeFacts
from collector.plan import PlanIndex
from collector.rules import PHASE_REQUIREMENTS
from collector.rules.model import Verdict
from collector.state import AgentReports
from preflight.mirrors import Mirror


@dataclass(frozen=True)
class Published:
    state: AgentReports
    verdicts: tuple[Verdict, ...]
    ready: tuple[tuple[str, bool], ...]  # (phase, ready) for install and runtime
    kube: KubeFacts = STANDALONE
    profile_name: str = "runai-2020"
    # Which probe plan version each node should run (for "outdated plan").
    plans: PlanIndex = field(default_factory=PlanIndex)
    # phase → requirement ids the profile needs for it (what "needed for" and readiness show).
    phases: tuple[tuple[str, tuple[str, ...]], ...] = tuple(PHASE_REQUIREMENTS.items())
    # Nodes whose data the rules could not judge, with why (collector.judging).
    unusable: tuple[tuple[str, str], ...] = ()
    # When judging last completed (Unix seconds; 0: never), and how often it raised.
    judged_at: float = 0.0
    judging_errors: int = 0
    faults: FaultLog = field(default_factory=FaultLog)
    # Profile targets probed at a mirror (collector setting `mirrors`), in profile order.
    mirrors: tuple[Mirror, ...] = ()

    @property
    def unusable_names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.unusable)

    @property
    def mirror_of(self) -> dict[str, str]:
        """Target name → its mirror's host:port, for the outputs that show targets."""
        return {m.target: m.address for m in self.mirrors}

    @property
    def kubernetes_nodes(self) -> tuple[tuple[str, bool], ...]:
        """(name, control_plane) of every Kubernetes node."""
        return tuple((n.name, n.control_plane) for n in self.kube.nodes)

    @property
    def allocatable_gpus(self) -> tuple[tuple[str, int], ...]:
        return tuple((n.name, n.allocatable_gpus) for n in self.kube.nodes)
