"""Probe kind `egress`: every target of the probe plan (plus local ones), concurrently."""

from __future__ import annotations

from agent.config import AgentConfig
from agent.kinds.base import DEADLINE_SLACK_SECONDS, KindContext, Probe, ProbeKind
from agent.probes import results as r
from agent.report import egress_result
from preflight.enums import PHASES, REASONS
from preflight.v1 import report_pb2 as pb


def build(ctx: KindContext) -> Probe[list[r.EgressResult]]:
    from agent.probes.egress.probe import probe_targets

    plan, settings = ctx.plan, ctx.config.egress

    async def egress() -> list[r.EgressResult]:
        return await probe_targets(plan.current.targets, settings)

    return egress


def signature(results: list[r.EgressResult]) -> object:
    return tuple((e.target, e.up, e.reason, e.failed_phase) for e in results)


def section(report: pb.NodeReport, results: list[r.EgressResult]) -> None:
    report.egress.extend(egress_result(e) for e in results)


def _line(e: pb.EgressResult) -> str:
    phases = " ".join(f"{PHASES.name(p.phase)}={p.duration_seconds * 1000:.1f}ms" for p in e.phases)
    if e.outcome == pb.OUTCOME_UP:
        status = f"UP   http {e.http_status}"
    else:
        status = f"DOWN {REASONS.name(e.reason)} in {PHASES.name(e.failed_phase) or '?'}"
    via = f" via proxy {e.proxy}" if e.proxy_used else ""
    detail = f"\n      {e.message}" if e.message and e.outcome != pb.OUTCOME_UP else ""
    return f"  {e.target:<40} {status}{via}  [{phases}]{detail}"


def text(report: pb.NodeReport) -> list[str]:
    return ["egress:", *(_line(e) for e in report.egress)]


def _deadline(config: AgentConfig) -> float:
    # Plan targets use egress.timeout; only local targets carry their own.
    slowest = max(
        (t.timeout or config.egress.timeout for t in config.egress.targets),
        default=config.egress.timeout,
    )
    return slowest + DEADLINE_SLACK_SECONDS


KIND = ProbeKind[list[r.EgressResult]](
    name="egress", build=build, deadline=_deadline, signature=signature, section=section, text=text
)
