"""Each node's probe plan: from the profile and the node's Kubernetes roles.

System nodes carry the profile's system-node label (`system_nodes.label`, by default
node-role.kubernetes.io/runai-system): one source for the plan, the system_nodes rule and
the rules that judge system targets. When no node carries it, or the Kubernetes API cannot
be read, every node counts as a system node (DESIGN.md §1, system_nodes), so every node
probes every target.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from collector.kube.facts import KubeFacts, KubeNode
from preflight.mirrors import Mirror, resolve_mirrors
from preflight.plan import plan_from_profile
from preflight.profile import Profile
from preflight.profile_sections import DEFAULT_SYSTEM_LABEL, SYSTEM_LABEL_PREFIX
from preflight.v1 import report_pb2 as pb


def labelled_nodes(kube: KubeFacts, label: str = DEFAULT_SYSTEM_LABEL) -> list[KubeNode]:
    """The nodes carrying the system-node `label` (a node-role label), in API order."""
    role = label.removeprefix(SYSTEM_LABEL_PREFIX)
    return [n for n in kube.nodes if role in n.roles]


def system_nodes(kube: KubeFacts, label: str = DEFAULT_SYSTEM_LABEL) -> frozenset[str] | None:
    """Names of the labelled system nodes; None when every node counts as one."""
    if not kube.available:
        return None
    labelled = frozenset(n.name for n in labelled_nodes(kube, label))
    return labelled or None


@dataclass(frozen=True)
class PlanIndex:
    """Which plan version each node should run, at one instant (immutable, for renderers)."""

    system_version: str = ""
    other_version: str = ""
    system: frozenset[str] | None = None

    def version_for(self, node: str) -> str:
        if self.system is None or node in self.system:
            return self.system_version
        return self.other_version

    def outdated(self, node: str, running: str) -> bool:
        return running != self.version_for(node)


class PlanBook:
    """The two plans of the current profile (system and other nodes), rebuilt on reload."""

    def __init__(
        self,
        profile: Profile,
        kube: Callable[[], KubeFacts],
        cluster_domain: str = "",
        mirrors: Mapping[str, str] | None = None,
    ) -> None:
        self._kube = kube
        self._cluster_domain = cluster_domain
        self._mirror_config = dict(mirrors or {})
        self.mirrors: tuple[Mirror, ...] = ()
        # (the Kubernetes view read, the label, its system nodes): one tuple swapped whole,
        # since the gRPC handler threads read it while another thread replaces it.
        self._labelled: tuple[KubeFacts | None, str, frozenset[str] | None] = (None, "", None)
        self.set_profile(profile)

    def set_profile(self, profile: Profile) -> None:
        """Plans for `profile`; ConfigError (nothing changed) when a mirror names no target."""
        mirrors = resolve_mirrors(profile, self._mirror_config)
        system_plan = plan_from_profile(
            profile, system=True, cluster_domain=self._cluster_domain, mirrors=mirrors
        )
        other_plan = plan_from_profile(profile, system=False, mirrors=mirrors)
        self.mirrors = mirrors
        # One immutable value swapped whole: a Report answered during a reload gets the
        # old label and plans or the new ones, never a mix.
        self._plans = (profile.system_label, system_plan, other_plan)

    def _system_nodes(self, label: str) -> frozenset[str] | None:
        # Once per Kubernetes read, not once per Report: the view object changes per read.
        kube = self._kube()
        seen, seen_label, labelled = self._labelled
        if kube is not seen or label != seen_label:  # another label picks other nodes
            labelled = system_nodes(kube, label)
            self._labelled = (kube, label, labelled)
        return labelled

    def index(self) -> PlanIndex:
        label, system_plan, other_plan = self._plans
        return PlanIndex(system_plan.version, other_plan.version, self._system_nodes(label))

    def for_node(self, node: str) -> pb.ProbePlan:
        label, system_plan, other_plan = self._plans
        system = self._system_nodes(label)
        return system_plan if system is None or node in system else other_plan
