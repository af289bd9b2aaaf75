"""`preflight check`: the one-shot pre-install diagnosis of this machine, as a verdict table.

Every agent probe runs once through the agent's own cycle (`agent.runner.run_cycle`,
the same deadlines and error-to-data handling as the DaemonSet), while the Kubernetes
API is read through the collector's adapter (`collector.kube.KubeSource`: --kubeconfig,
else KUBECONFIG / ~/.kube/config / in-cluster, else standalone). The report this
machine would push is accepted into a real `ClusterState` and judged by the
collector's rule registry with the chosen profile, so a verdict here is the verdict
the collector would give for a cluster of this one node. Not judged: agent_coverage
(whether every node runs an agent is the running collector's to say).

What is probed is the profile's probe plan (preflight.plan.plan_from_profile, the one
a collector hands its agents; this machine counts as a system node); an agent config
(--config) adds or overrides targets and volumes by name, as on an agent, and sets the
proxy, extra CA, deadlines and host root.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from google.protobuf import json_format

from agent.config import AgentConfig, resolve_node_name
from agent.config import load_config as load_agent_config
from agent.kinds import KINDS
from agent.plan import AgentPlan
from agent.probes.hardware import FILESYSTEM_ROLES
from agent.runner import BoundProbe, ProbeSet, agent_version, default_probes, run_cycle
from agent.snapshot import build_report
from collector.config import LimitsConfig
from collector.kube.adapter import KubeMode, KubeSource
from collector.kube.facts import KubeFacts
from collector.kube.platform import read_platform
from collector.rules import PLATFORM_REQUIREMENTS, RULES, cluster_ready
from collector.rules.model import Evidence, Verdict
from collector.state import ClusterState, Rejected
from preflight.mirrors import Mirror
from preflight.plan import plan_from_profile
from preflight.profile import Profile
from preflight.table import Outcome, Row

T = TypeVar("T")

# Requirements `check` leaves to a running collector, and why.
NOT_JUDGED = {
    "agent_coverage": "one machine cannot see whether every node runs an agent; "
    "`preflight status` against the collector judges it",
}
PROBES = tuple(k.name for k in KINDS)


def plan_for(
    agent: AgentConfig,
    profile: Profile,
    cluster_domain: str = "",
    mirrors: Sequence[Mirror] = (),
) -> AgentPlan:
    """The probe plan of `profile` for this machine, merged with the agent config's own.

    The same merge an agent applies to the plan a collector sends (agent.plan): targets
    and volumes the agent config names replace the profile's of the same name, or are
    added. This machine counts as a system node, so `system`-scoped targets (and the
    cluster domain, when given) are probed.
    """
    plan = plan_from_profile(profile, system=True, cluster_domain=cluster_domain, mirrors=mirrors)
    return AgentPlan(agent, initial=plan)


class Progress:
    """One status line on stderr while the probes run (the egress deadline is the long wait).

    On a terminal the line is rewritten in place as probes finish; elsewhere (CI logs)
    it is printed once at the start and once at the end, so logs stay readable.
    """

    def __init__(self, stream: IO[str], longest: float, enabled: bool = True) -> None:
        self.stream = stream
        self.longest = longest
        self.enabled = enabled
        self.tty = stream.isatty()
        self.done: list[str] = []
        self.started = time.monotonic()

    def _line(self) -> str:
        pending = [p for p in (*PROBES, "kubernetes") if p not in self.done]
        elapsed = time.monotonic() - self.started
        waiting = f"waiting for {', '.join(pending)}" if pending else "judging"
        return (
            f"preflight check: probing this machine ({elapsed:.0f}s, up to "
            f"{self.longest:.0f}s): {waiting}"
        )

    def start(self) -> None:
        if self.enabled:
            self.stream.write(self._line() + ("" if self.tty else "\n"))
            self.stream.flush()

    def finished(self, name: str) -> None:
        self.done.append(name)
        if self.enabled and self.tty:
            self.stream.write("\r\x1b[2K" + self._line())
            self.stream.flush()

    def end(self) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.started
        line = f"preflight check: probes done in {elapsed:.1f}s"
        self.stream.write(("\r\x1b[2K" if self.tty else "") + line + "\n")
        self.stream.flush()


def _tracked(
    name: str, probe: Callable[[], Awaitable[T]], progress: Progress
) -> Callable[[], Awaitable[T]]:
    async def run() -> T:
        try:
            return await probe()
        finally:
            progress.finished(name)

    return run


def _with_progress(probes: ProbeSet, progress: Progress) -> ProbeSet:
    return ProbeSet(
        {
            name: BoundProbe(_tracked(name, bound.run, progress), bound.deadline)
            for name, bound in probes.probes.items()
        },
        close=probes.close,
        plan=probes.plan,
    )


def unprivileged_notes(config: AgentConfig, report: Any) -> list[str]:
    """What a normal user could not read here, said instead of silently left out."""
    if os.geteuid() == 0:
        return []
    notes = []
    root = Path(config.host_root)
    measured = {fs.path for fs in report.hardware.filesystems}
    for role, path in FILESYSTEM_ROLES:
        target = root / path.lstrip("/")
        if path not in measured and target.is_dir():
            notes.append(
                f"{role} filesystem {path}: not measured as uid {os.geteuid()} "
                "(run as root for its capacity)"
            )
    nvidia = root / "proc/driver/nvidia/gpus"
    if nvidia.is_dir() and not os.access(nvidia, os.R_OK | os.X_OK):
        notes.append(f"{nvidia}: not readable as uid {os.geteuid()} (the driver's GPU records)")
    for mount in report.mounts:
        if mount.message and "ermission" in mount.message:
            notes.append(f"shared volume {mount.path}: {mount.message} (run as root to write)")
    return notes


def kube_source(kubeconfig: Path | None, profile: Profile, configuration: Any = None) -> KubeSource:
    """--kubeconfig FILE forces that file; otherwise the collector's auto discovery.

    The cluster add-ons are read, as the collector reads them, only when the profile
    judges one of them.
    """
    reader = read_platform if PLATFORM_REQUIREMENTS & set(profile.requirement_phases()) else None
    mode: KubeMode = "kubeconfig" if kubeconfig is not None else "auto"
    return KubeSource(
        mode, kubeconfig=kubeconfig, configuration=configuration, platform_reader=reader
    )


def judge(
    report: Any,
    profile: Profile,
    kube: KubeFacts,
    now: float,
    config: AgentConfig,
    cluster_domain: str = "",
    mirrors: Sequence[Mirror] = (),
) -> tuple[list[Verdict], list[str]]:
    """The collector's rules over a state that holds this one report."""
    state = ClusterState(
        LimitsConfig(),
        heartbeat_interval=config.heartbeat_interval,
        stale_after_heartbeats=3,
        forget_after=3600.0,
    )
    notes: list[str] = []
    try:
        state.accept(report, now)
    except Rejected as rejected:
        # The collector would refuse this report too: judge without it, and say why.
        notes.append(f"the collector would reject this machine's report: {rejected}")
    view = Evidence(
        state=state.snapshot(now),
        profile=profile,
        now=now,
        kube=kube,
        cluster_domain=cluster_domain,
        mirror_of=tuple((m.target, m.address) for m in mirrors),
    )
    # The requirements the profile judges (collector.rules.evaluate_all), in RULES order.
    wanted = profile.requirement_phases()
    verdicts = [
        rule(view) for rid, rule in RULES.items() if rid in wanted and rid not in NOT_JUDGED
    ]
    return verdicts, notes


async def run_check(
    profile: Profile,
    agent: AgentConfig,
    *,
    node_name: str | None,
    kubeconfig: Path | None,
    cluster_domain: str = "",
    progress_stream: IO[str] = sys.stderr,
    show_progress: bool = True,
    kube_configuration: Any = None,
    mirrors: Sequence[Mirror] = (),
) -> Outcome:
    config = agent
    node = resolve_node_name(node_name, config)
    probes = default_probes(config, node, plan_for(config, profile, cluster_domain, mirrors))
    longest = max(bound.deadline for bound in probes.probes.values())
    progress = Progress(progress_stream, longest, show_progress)
    source = kube_source(kubeconfig, profile, kube_configuration)

    async def read_kube() -> KubeFacts:
        try:
            return await source.read()
        finally:
            progress.finished("kubernetes")

    progress.start()
    try:
        snapshot, kube = await asyncio.gather(
            run_cycle(_with_progress(probes, progress)), read_kube()
        )
    finally:
        if probes.close is not None:
            await probes.close()
    progress.end()
    report = build_report(
        snapshot,
        node_name=node,
        agent_version=agent_version(),
        instance_id="check",
        sequence=1,
        probe_interval=config.probe_interval,
        heartbeat_interval=config.heartbeat_interval,
    )
    now = time.time()
    report.sent_at.FromNanoseconds(int(now * 1e9))
    verdicts, notes = judge(report, profile, kube, now, config, cluster_domain, mirrors)
    notes.extend(f"{m.target} probed at its mirror {m.address} (was {m.origin})" for m in mirrors)
    notes.extend(
        f"probe {f.probe} produced nothing: {f.message}" + (" (deadline)" if f.timed_out else "")
        for f in report.probe_errors
    )
    notes.extend(unprivileged_notes(config, report))
    if report.HasField("gpus") and report.gpus.driver_message:
        notes.append(f"GPUs: {report.gpus.driver_message}")
    return Outcome(
        command="check",
        profile=profile.name,
        generated_at=now,
        rows=[Row(v.requirement, v.status, v.reason, v.nodes, v.targets) for v in verdicts],
        source={"node": node},
        kubernetes={
            "available": kube.available,
            "server_version": kube.server_version,
            "error": kube.error,
            "nodes": len(kube.nodes),
        },
        ready=cluster_ready(verdicts, profile.phase_requirements()),
        skipped=sorted(NOT_JUDGED.items()),
        notes=notes,
        report=json_format.MessageToDict(
            report, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        ),
    )


def load_check_agent_config(path: Path | None, host_root: Path | None) -> AgentConfig:
    config = load_agent_config(path)
    if host_root is not None:
        config = config.replace(host_root=host_root)
    return config
