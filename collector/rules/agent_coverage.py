"""agent_coverage: every node is observed by a fresh agent report.

With the Kubernetes API, every Kubernetes node must have a live agent; without
it, every agent that ever reported must still be reporting.

Judged every second over every node: the passes over all nodes are C loops (map,
compress, filterfalse, min), and the late nodes are looked for one by one only when the
oldest live report is late (no report older than that one can be on time).
"""

from __future__ import annotations

from itertools import compress, filterfalse
from operator import attrgetter

from collector.rules.model import Evidence, Verdict, count, names

REQUIREMENT = "agent_coverage"
# A report older than this many heartbeats is late (warn) before it is stale (fail).
LATE_AFTER_HEARTBEATS = 1.5


_name, _up, _received = attrgetter("name"), attrgetter("up"), attrgetter("received_at")


def evaluate(view: Evidence) -> Verdict:
    state = view.state
    node_names, ups = list(map(_name, state.nodes)), list(map(_up, state.nodes))
    live = set(compress(node_names, ups))
    expected = list(map(_name, view.kube.nodes)) if view.kube.available else node_names
    if not expected:
        return Verdict(REQUIREMENT, "unknown", "no node known: no agent report, no Kubernetes node")
    missing = sorted(filterfalse(live.__contains__, expected))
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
    received = list(compress(map(_received, state.nodes), ups))
    oldest = min(received, default=view.now)
    # now - received_at only grows as received_at falls: none is late unless the oldest
    # is (a NaN first would hide the others from min: then every node is looked at).
    late: list[str] = []
    if view.now - oldest > late_after or oldest != oldest:
        late = sorted(n.name for n in state.nodes if n.up and view.now - n.received_at > late_after)
    if late:
        return Verdict(REQUIREMENT, "warn", f"reports late from {names(late)}", nodes=tuple(late))
    return Verdict(REQUIREMENT, "pass", f"every node reports ({count(len(expected), 'node')})")
