"""egress_install: outbound 443 from every node to the install-time targets."""

from __future__ import annotations

from collector.rules.egress import evaluate_phase
from collector.rules.model import Evidence, Verdict


def evaluate(view: Evidence) -> Verdict:
    return evaluate_phase(view, "egress_install", "install")
