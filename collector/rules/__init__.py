"""Verdict rules: pure functions from a ClusterView to a Verdict, one module per requirement.

Rules that need the Kubernetes API read `unknown` in standalone mode; hysteresis
(collector.rules.hysteresis) is applied on top by the service.
"""

from __future__ import annotations

from collections.abc import Callable

from collector.rules import (
    agent_coverage,
    control_plane_hardware,
    egress_install,
    egress_runtime,
    gpu_nodes,
    kubernetes_version,
    shared_volume,
)
from collector.rules.model import ClusterView, Verdict

Rule = Callable[[ClusterView], Verdict]

# Requirement id → rule, in the order of DESIGN.md §1.
RULES: dict[str, Rule] = {
    "kubernetes_version": kubernetes_version.evaluate,
    "control_plane_hardware": control_plane_hardware.evaluate,
    "shared_volume": shared_volume.evaluate,
    "egress_install": egress_install.evaluate,
    "egress_runtime": egress_runtime.evaluate,
    "agent_coverage": agent_coverage.evaluate,
    "gpu_nodes": gpu_nodes.evaluate,
}
REQUIREMENTS = tuple(RULES)
# Which requirements must hold for each phase of the Run:AI lifecycle.
PHASE_REQUIREMENTS = {
    "install": (
        "kubernetes_version",
        "control_plane_hardware",
        "shared_volume",
        "egress_install",
        "agent_coverage",
        "gpu_nodes",
    ),
    "runtime": (
        "kubernetes_version",
        "shared_volume",
        "egress_runtime",
        "agent_coverage",
        "gpu_nodes",
    ),
}


def evaluate_all(view: ClusterView) -> list[Verdict]:
    return [rule(view) for rule in RULES.values()]


def cluster_ready(verdicts: list[Verdict]) -> dict[str, bool]:
    """Ready for a phase when none of its requirements fails or is unknown."""
    by_id = {v.requirement: v for v in verdicts}
    return {
        phase: all(by_id[r].status in ("pass", "warn") for r in required if r in by_id)
        for phase, required in PHASE_REQUIREMENTS.items()
    }
