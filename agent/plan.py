"""The probe plan the agent runs: the collector's (or the packaged profile's) plus local config.

Before the first ReportAck, and in --once mode, the plan is derived from the profile
packaged with the agent (`profile`, `--profile`), exactly as a collector without
Kubernetes would derive it. Every ack carries the collector's plan; a new version is
adopted at once and probed from the next cycle. The agent's own `egress.targets` and
`mounts.volumes` are local additions: one with the name (path) of a plan entry
replaces it on this node. Both the version and the local changes travel in the report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from agent.config import AgentConfig, EgressTarget, SharedVolume
from preflight.plan import plan_from_profile
from preflight.profile import load_profile
from preflight.v1 import report_pb2 as pb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Effective:
    """The merged plan one cycle probes (immutable: a cycle keeps the one it started with)."""

    version: str
    source: int  # pb.PlanSource
    targets: tuple[EgressTarget, ...]
    volumes: tuple[SharedVolume, ...]
    local_targets: tuple[str, ...]
    local_volumes: tuple[str, ...]


def _target(t: pb.PlanTarget) -> EgressTarget:
    return EgressTarget(
        name=t.name,
        host=t.host,
        port=t.port or 443,
        path=t.path or "/",
        phase=t.phase if t.phase in ("install", "runtime") else "install",  # type: ignore[arg-type]
        expect_status=tuple(t.expect_status),
        require_header_for=dict(t.require_header_for),
    )


def merge(config: AgentConfig, plan: pb.ProbePlan, source: int) -> Effective:
    local = {t.name: t for t in config.egress.targets}
    targets = [local.pop(t.name) if t.name in local else _target(t) for t in plan.egress_targets]
    targets.extend(local.values())  # additions keep their config order
    local_volumes = {v.path: v for v in config.mounts.volumes}
    volumes = [
        local_volumes.pop(v.path)
        if v.path in local_volumes
        else SharedVolume(path=v.path, write_expected=v.write_expected)
        for v in plan.shared_volumes
    ]
    volumes.extend(local_volumes.values())
    return Effective(
        version=plan.version,
        source=source,
        targets=tuple(targets),
        volumes=tuple(volumes),
        local_targets=tuple(t.name for t in config.egress.targets),
        local_volumes=tuple(v.path for v in config.mounts.volumes),
    )


def packaged_plan(config: AgentConfig) -> pb.ProbePlan:
    """The plan of the configured profile; every node counts as a system node here.

    Raises ConfigError (naming the profile) when the profile cannot be loaded.
    """
    return plan_from_profile(load_profile(config.profile), system=True)


class AgentPlan:
    """Holds the plan in force; the client's ack handler feeds it, the runner reads it."""

    def __init__(self, config: AgentConfig, initial: pb.ProbePlan | None = None) -> None:
        self.config = config
        base = initial if initial is not None else packaged_plan(config)
        self.current = merge(config, base, pb.PLAN_SOURCE_PACKAGED_PROFILE)

    def adopt(self, plan: pb.ProbePlan) -> bool:
        """Takes the collector's plan; True when it differs from the one in force."""
        if not plan.version:
            return False  # a collector that sends no plan: keep ours
        if plan.version == self.current.version and self.current.source == pb.PLAN_SOURCE_COLLECTOR:
            return False
        previous = self.current.version
        self.current = merge(self.config, plan, pb.PLAN_SOURCE_COLLECTOR)
        if plan.version != previous:
            log.info(
                "probe plan %s from the collector (profile %s, %d targets, %d volumes)",
                plan.version,
                plan.profile,
                len(self.current.targets),
                len(self.current.volumes),
            )
        return plan.version != previous
