"""NodeReports whose GPU section comes from the real agent code run on a fixture host tree.

Rule and status-page tests judge what an agent would send, not hand-set fields:
the tree is read by agent.probes.gpu (PCI, kernel driver view) and converted by
agent.report, with NVML the test's fake, or the real binding (no library here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.hostfs import HostFS
from agent.probes.gpu import collect_gpus
from agent.snapshot import Snapshot, build_report
from preflight.v1 import report_pb2 as pb

HOSTFS = Path(__file__).resolve().parents[1] / "fixtures" / "hostfs"


def gpu_report(node: str, tree: str, nvml: Any = None) -> pb.NodeReport:
    """The report of `node` whose host is fixture `tree`; nvml None = the real binding."""
    facts = collect_gpus(HostFS(HOSTFS / tree), nvml=nvml)
    return build_report(
        Snapshot(results={"gpus": facts}),
        node_name=node,
        agent_version="test",
        instance_id=f"{node}-1",
        sequence=1,
        probe_interval=15.0,
        heartbeat_interval=30.0,
    )
