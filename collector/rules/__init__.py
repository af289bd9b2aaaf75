"""Verdict rules: pure functions from an Evidence to a Verdict, one module per requirement.

The profile says which requirements it judges and for which phase
(`Profile.requirement_phases()`; runai-2020 judges the 2020 set). Rules that need the
Kubernetes API read `unknown` in standalone mode; hysteresis
(collector.rules.hysteresis) is applied on top by the service.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from collector.rules import (
    agent_coverage,
    clock_sync,
    cluster_domain_tls,
    container_runtime,
    control_plane_hardware,
    default_storage_class,
    egress_install,
    egress_runtime,
    gpu_nodes,
    gpu_operator,
    ingress_controller,
    kubernetes_version,
    prometheus_stack,
    shared_volume,
    system_nodes,
)
from collector.rules.model import Evidence, Verdict
from preflight.profile_sections import DEFAULT_REQUIREMENTS, KNOWN_REQUIREMENTS, PHASES

Rule = Callable[[Evidence], Verdict]

# Requirement id → rule, in the order of DESIGN.md §1 (the 2020 table, then the later ones).
RULES: dict[str, Rule] = {
    "kubernetes_version": kubernetes_version.evaluate,
    "control_plane_hardware": control_plane_hardware.evaluate,
    "shared_volume": shared_volume.evaluate,
    "egress_install": egress_install.evaluate,
    "egress_runtime": egress_runtime.evaluate,
    "agent_coverage": agent_coverage.evaluate,
    "gpu_nodes": gpu_nodes.evaluate,
    "system_nodes": system_nodes.evaluate,
    "gpu_operator": gpu_operator.evaluate,
    "ingress_controller": ingress_controller.evaluate,
    "prometheus_stack": prometheus_stack.evaluate,
    "default_storage_class": default_storage_class.evaluate,
    "container_runtime": container_runtime.evaluate,
    "clock_sync": clock_sync.evaluate,
    "cluster_domain_tls": cluster_domain_tls.evaluate,
}
assert tuple(RULES) == KNOWN_REQUIREMENTS, "every known requirement id has exactly one rule"
REQUIREMENTS = tuple(RULES)
# Requirements judged only from the cluster add-ons (collector.kube.platform reads them).
PLATFORM_REQUIREMENTS = frozenset(
    {"gpu_operator", "ingress_controller", "prometheus_stack", "default_storage_class"}
)
# Which requirements must hold for each phase of the Run:AI lifecycle (profile runai-2020).
PHASE_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    phase: tuple(r for r, phases in DEFAULT_REQUIREMENTS.items() if phase in phases)
    for phase in PHASES
}


def evaluate_all(view: Evidence) -> list[Verdict]:
    """The verdict of every requirement the view's profile judges, in RULES order."""
    wanted = view.profile.requirement_phases()
    return [rule(view) for rid, rule in RULES.items() if rid in wanted]


def cluster_ready(
    verdicts: list[Verdict], phases: Mapping[str, tuple[str, ...]] | None = None
) -> dict[str, bool]:
    """Ready for a phase when none of its requirements fails or is unknown."""
    by_id = {v.requirement: v for v in verdicts}
    required_by_phase = PHASE_REQUIREMENTS if phases is None else phases
    return {
        phase: all(by_id[r].status in ("pass", "warn") for r in required if r in by_id)
        for phase, required in required_by_phase.items()
    }
