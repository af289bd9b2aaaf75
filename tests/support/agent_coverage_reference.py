"""The agent_coverage rule (collector/rules/agent_coverage.py) as on main, kept as the reference.

A property test (tests/collector/test_rules_reference.py) checks that the collector's
fast paths give the same verdicts as this, reasons and evidence included, for random
reports and histories. Not used by the collector.

Original module docstring follows.

agent_coverage: every node is observed by a fresh agent report.

With the Kubernetes API, every Kubernetes node must have a live agent; without
it, every agent that ever reported must still be reporting.
"""

from __future__ import annotations

from collector.rules.model import Evidence, Verdict, count, names

REQUIREMENT = "agent_coverage"
# A report older than this many heartbeats is late (warn) before it is stale (fail).
LATE_AFTER_HEARTBEATS = 1.5


def evaluate(view: Evidence) -> Verdict:
    state = view.state
    live = {n.name for n in state.nodes if n.up}
    expected = (
        [n.name for n in view.kube.nodes] if view.kube.available else [n.name for n in state.nodes]
    )
    if not expected:
        return Verdict(REQUIREMENT, "unknown", "no node known: no agent report, no Kubernetes node")
    missing = sorted(name for name in expected if name not in live)
    if missing:
        never = [m for m in missing if state.node(m) is None]
        what = "without an agent report" if len(never) == len(missing) else "without a fresh report"
        return Verdict(
            REQUIREMENT,
            "fail",
            f"{len(missing)} of {count(len(expected), 'node')} {what}: {names(missing)}",
            nodes=tuple(missing),
        )
    late_after = state.heartbeat_interval * LATE_AFTER_HEARTBEATS
    late = sorted(n.name for n in state.nodes if n.up and view.now - n.received_at > late_after)
    if late:
        return Verdict(REQUIREMENT, "warn", f"reports late from {names(late)}", nodes=tuple(late))
    return Verdict(REQUIREMENT, "pass", f"every node reports ({count(len(expected), 'node')})")
