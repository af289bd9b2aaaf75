"""agent_coverage: every node is observed by a fresh agent report."""

from __future__ import annotations

from collector.rules.model import ClusterView, Verdict, names


def evaluate(view: ClusterView) -> Verdict:
    nodes = view.state.nodes
    if not nodes:
        return Verdict("agent_coverage", "unknown", "no agent has ever reported")
    silent = [n.name for n in nodes if not n.up]
    if silent:
        return Verdict(
            "agent_coverage",
            "fail",
            f"{len(silent)} of {len(nodes)} agents silent for over "
            f"{view.state.stale_after_seconds:g}s: {names(silent)}",
            nodes=tuple(silent),
        )
    return Verdict("agent_coverage", "pass", f"all {len(nodes)} agents report")
