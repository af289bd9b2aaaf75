"""Profile sections added by the later Run:ai releases (runai-2.13, -2.18, -2.25).

Each section is optional in a profile and configures one requirement rule of
collector/rules; `requirements` says which rules a profile judges, and for which phase.
A profile without `requirements` (runai-2020) judges the 2020 set (DEFAULT_REQUIREMENTS).
Kept in the shared `preflight` package beside the profile model, so `preflight profiles`
reads and prints the same data the collector judges by.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from preflight.strict import Check, Duration, Strict

Phase = Literal["install", "runtime"]
PHASES: tuple[Phase, ...] = ("install", "runtime")

# Requirement ids (DESIGN.md §1, settled) and the 2020 phases, for profiles that do not say.
DEFAULT_REQUIREMENTS: dict[str, tuple[Phase, ...]] = {
    "kubernetes_version": ("install", "runtime"),
    "control_plane_hardware": ("install",),
    "shared_volume": ("install", "runtime"),
    "egress_install": ("install",),
    "egress_runtime": ("runtime",),
    "agent_coverage": ("install", "runtime"),
    "gpu_nodes": ("install", "runtime"),
}
KNOWN_REQUIREMENTS = (
    *DEFAULT_REQUIREMENTS,
    "system_nodes",
    "gpu_operator",
    "ingress_controller",
    "prometheus_stack",
    "default_storage_class",
    "container_runtime",
    "clock_sync",
    "cluster_domain_tls",
)
VERSION_PATTERN = r"^v?\d+(\.\d+){1,2}$"
# Run:ai's system-node label (D8, G4); a profile's system_nodes.label may name another role.
DEFAULT_SYSTEM_LABEL = "node-role.kubernetes.io/runai-system"
SYSTEM_LABEL_PREFIX = "node-role.kubernetes.io/"


@dataclass(frozen=True, kw_only=True)
class VersionRange(Strict):
    """Inclusive on both ends; a bound given as major.minor covers every patch of it."""

    minimum: Annotated[str, Check(pattern=VERSION_PATTERN)]
    maximum: Annotated[str, Check(pattern=VERSION_PATTERN)] | None = None


@dataclass(frozen=True, kw_only=True)
class SystemNodesRule(Strict):
    cpus: Annotated[int, Check(ge=1)]
    memory_bytes: Annotated[int, Check(ge=1)]
    # A node-role label: the collector keeps a node's roles, not every label it carries.
    # It picks the nodes both the rule judges and the probe plan gives `system` targets.
    label: Annotated[str, Check(pattern=r"^node-role\.kubernetes\.io/[A-Za-z0-9._-]+$")] = (
        DEFAULT_SYSTEM_LABEL
    )
    minimum: Annotated[int, Check(ge=1)] = 1
    # Fewer labelled nodes than this (but at least `minimum`) is a warning.
    recommended: Annotated[int, Check(ge=1)] | None = None
    root_disk_bytes: Annotated[int, Check(ge=0)] = 0


@dataclass(frozen=True, kw_only=True)
class GpuOperatorRule(Strict):
    versions: VersionRange
    # Versions the release notes exclude inside the range ("1.10", "1.11"): prefix match.
    excluded: tuple[str, ...] = ()
    # GFD labels every GPU node must carry; "a|b" accepts either name (GFD renamed some).
    gfd_labels: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ClockSyncRule(Strict):
    # A node's clock further than this from the collector's fails (preinstall-diagnostics:
    # 1 minute between pods). The measured skew includes the report's network delay.
    max_skew: Duration = 60.0


@dataclass(frozen=True, kw_only=True)
class ContainerRuntimeRule(Strict):
    # nodeInfo.containerRuntimeVersion is "<name>://<version>"; these are allowed names.
    allowed: Annotated[tuple[str, ...], Check(min_length=1)]


def check_requirements(value: dict[str, tuple[Phase, ...]]) -> dict[str, tuple[Phase, ...]]:
    """The `requirements` mapping of a profile: known ids, each with at least one phase."""
    unknown = sorted(set(value) - set(KNOWN_REQUIREMENTS))
    if unknown:
        raise ValueError(
            f"unknown requirement ids {unknown}; known: {', '.join(KNOWN_REQUIREMENTS)}"
        )
    for rid, phases in value.items():
        if not phases:
            raise ValueError(f"requirement {rid!r} lists no phase")
    return value
