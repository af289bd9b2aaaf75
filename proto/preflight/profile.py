"""Requirement profiles: thresholds, targets and hysteresis as validated YAML data.

In the shared package so the collector, `preflight` and the agent read the same files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from preflight.profile_sections import (
    DEFAULT_REQUIREMENTS,
    DEFAULT_SYSTEM_LABEL,
    PHASES,
    ClockSyncRule,
    ContainerRuntimeRule,
    GpuOperatorRule,
    Phase,
    SystemNodesRule,
    VersionRange,
    check_requirements,
)
from preflight.strict import Check, ConfigError, Duration, Invalid, Strict, load_yaml_file

MAJOR_MINOR = Check(pattern=r"^v?\d+\.\d+")


@dataclass(frozen=True, kw_only=True)
class KubernetesVersionRule(Strict):
    minimum: Annotated[str, MAJOR_MINOR]
    # Below it (and at or above minimum): warn. None: nothing beyond the minimum is advised.
    recommended: Annotated[str, MAJOR_MINOR] | None = None
    # The newest validated release; newer is a warning ("not yet validated"), never a fail.
    maximum: Annotated[str, MAJOR_MINOR] | None = None
    # OpenShift clusters are judged by their own version (ClusterVersion), in this range.
    openshift: VersionRange | None = None


@dataclass(frozen=True, kw_only=True)
class ControlPlaneRule(Strict):
    cpus: Annotated[int, Check(ge=1)]
    memory_bytes: Annotated[int, Check(ge=1)]
    dedicated: bool = True


@dataclass(frozen=True, kw_only=True)
class SharedVolumeRule(Strict):
    paths: tuple[str, ...] = ()
    # Whether agents probe writes on `paths` (sent in the probe plan).
    write_expected: bool = False
    marker_max_age: Duration = 300.0


@dataclass(frozen=True, kw_only=True)
class ProfileTarget(Strict):
    name: Annotated[str, Check(min_length=1)]
    host: Annotated[str, Check(min_length=1)]
    phase: Literal["install", "runtime"]
    port: Annotated[int, Check(ge=1, le=65535)] = 443
    path: str = "/"
    expect_status: tuple[int, ...] = ()
    require_header_for: dict[int, str] = field(default_factory=dict)
    # Which nodes must reach it: every node, or only the system nodes
    # (the profile's system-node label, see Profile.system_label).
    scope: Literal["all", "system"] = "all"


@dataclass(frozen=True, kw_only=True)
class EgressRule(Strict):
    targets: tuple[ProfileTarget, ...]


@dataclass(frozen=True, kw_only=True)
class Hysteresis(Strict):
    fail_after: Annotated[int, Check(ge=1)] = 2
    pass_after: Annotated[int, Check(ge=1)] = 2


@dataclass(frozen=True, kw_only=True)
class Profile(Strict):
    name: str
    kubernetes_version: KubernetesVersionRule
    egress: EgressRule
    description: str = ""
    # The Kubernetes master's advised size (2020); later releases give none.
    control_plane: ControlPlaneRule | None = None
    shared_volume: SharedVolumeRule = field(default_factory=SharedVolumeRule)
    hysteresis: Hysteresis = field(default_factory=Hysteresis)
    system_nodes: SystemNodesRule | None = None
    gpu_operator: GpuOperatorRule | None = None
    container_runtime: ContainerRuntimeRule | None = None
    clock_sync: ClockSyncRule | None = None
    # requirement id → phases that need it; absent: the 2020 set (DEFAULT_REQUIREMENTS).
    requirements: dict[str, tuple[Phase, ...]] | None = None

    def _validate(self) -> None:
        if self.requirements is not None:
            try:
                check_requirements(self.requirements)
            except ValueError as error:
                raise Invalid("requirements", str(error)) from None

    def requirement_phases(self) -> dict[str, tuple[Phase, ...]]:
        """requirement id → phases, as this profile judges them."""
        return dict(DEFAULT_REQUIREMENTS if self.requirements is None else self.requirements)

    def phase_requirements(self) -> dict[str, tuple[str, ...]]:
        """phase → the requirement ids that must hold for it."""
        mapping = self.requirement_phases()
        return {p: tuple(r for r, phases in mapping.items() if p in phases) for p in PHASES}

    @property
    def system_label(self) -> str:
        """The node label that makes a system node: system_nodes.label, else Run:ai's."""
        return self.system_nodes.label if self.system_nodes else DEFAULT_SYSTEM_LABEL

    def targets_of_phase(self, phase: str) -> tuple[ProfileTarget, ...]:
        return tuple(t for t in self.egress.targets if t.phase == phase)


def shipped_profiles() -> list[str]:
    folder = resources.files("preflight.profiles")
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def load_profile(name_or_path: str) -> Profile:
    """A shipped profile by name (`runai-2020`) or any YAML file by path."""
    if name_or_path in shipped_profiles():
        with resources.as_file(resources.files("preflight.profiles") / f"{name_or_path}.yaml") as p:
            return load_yaml_file(Profile, p)
    path = Path(name_or_path)
    if not path.exists():
        raise ConfigError(
            f"profile {name_or_path!r}: neither a shipped profile "
            f"({', '.join(shipped_profiles())}) nor an existing file"
        )
    return load_yaml_file(Profile, path)
