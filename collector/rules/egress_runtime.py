"""egress_runtime: outbound 443 from every node to the runtime targets (metrics, Run:AI cloud)."""

from __future__ import annotations

from collector.rules.egress import evaluate_phase
from collector.rules.model import Evidence, Verdict


def evaluate(view: Evidence) -> Verdict:
    return evaluate_phase(view, "egress_runtime", "runtime")
