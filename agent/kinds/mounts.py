"""Probe kind `mounts`: the shared volumes of the probe plan (plus local ones)."""

from __future__ import annotations

from agent.config import AgentConfig
from agent.kinds.base import DEADLINE_SLACK_SECONDS, KindContext, Probe, ProbeKind
from agent.probes import results as r
from agent.report import mount_result
from preflight.enums import MOUNT_STATES, WRITE_CHECKS
from preflight.v1 import report_pb2 as pb


def build(ctx: KindContext) -> Probe[list[r.MountResult]]:
    from agent.probes.mounts import MountProber

    plan = ctx.plan
    prober = MountProber(ctx.host, ctx.node_name, ctx.config.mounts, lambda: plan.current.volumes)
    ctx.closers.append(prober.close)
    return prober.probe


def signature(mounts: list[r.MountResult]) -> object:
    return tuple(
        (
            m.path,
            m.state,
            m.write_check,
            m.read_only,
            m.fs_type,
            m.source,
            m.network_filesystem,
            len(m.marker.peers) if m.marker else 0,
        )
        for m in mounts
    )


def section(report: pb.NodeReport, mounts: list[r.MountResult]) -> None:
    report.mounts.extend(mount_result(m) for m in mounts)


def text(report: pb.NodeReport) -> list[str]:
    lines = ["mounts:" if report.mounts else "mounts: none configured"]
    lines.extend(
        f"  {m.path:<40} {MOUNT_STATES.name(m.state)} {m.fs_type} {m.source} "
        f"write={WRITE_CHECKS.name(m.write_check)} {m.message}".rstrip()
        for m in report.mounts
    )
    return lines


def _deadline(config: AgentConfig) -> float:
    # The prober keeps its own deadline (mounts.timeout); the runner's fires only after.
    return config.mounts.timeout + DEADLINE_SLACK_SECONDS


KIND = ProbeKind[list[r.MountResult]](
    name="mounts", build=build, deadline=_deadline, signature=signature, section=section, text=text
)
