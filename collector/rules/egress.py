"""Shared logic of egress_install and egress_runtime: every live node reaches every target."""

from __future__ import annotations

from collector.rules.model import ClusterView, Verdict, count, names
from preflight.enums import REASONS
from preflight.v1 import report_pb2 as pb


def evaluate_phase(view: ClusterView, requirement: str, phase: str) -> Verdict:
    targets = [t.name for t in view.profile.targets_of_phase(phase)]
    nodes = view.live_nodes
    if not nodes:
        return Verdict(
            requirement, "unknown", "no agent has reported recently", targets=tuple(targets)
        )
    failures: list[str] = []
    failing_nodes: set[str] = set()
    failing_targets: set[str] = set()
    for node in nodes:
        results = {e.target: e for e in node.report.egress}
        for target in targets:
            result = results.get(target)
            if result is None:
                failures.append(f"{node.name} → {target}: not probed")
            elif result.outcome != pb.OUTCOME_UP:
                failures.append(f"{node.name} → {target}: {REASONS.name(result.reason)}")
            else:
                continue
            failing_nodes.add(node.name)
            failing_targets.add(target)
    if failures:
        return Verdict(
            requirement,
            "fail",
            f"{count(len(failures), 'node×target pair')} unreachable: {names(failures, 3)}",
            nodes=tuple(sorted(failing_nodes)),
            targets=tuple(sorted(failing_targets)),
        )
    return Verdict(
        requirement,
        "pass",
        f"every node reaches every {phase} target "
        f"({count(len(nodes), 'node')} × {count(len(targets), 'target')})",
        targets=tuple(targets),
    )
