"""The egress rules' logic (collector/rules/egress.py) as on main, kept as the reference.

A property test (tests/collector/test_rules_reference.py) checks that the collector's
fast paths give the same verdicts as this, reasons and evidence included, for random
reports and histories. Not used by the collector.

Original module docstring follows.

Shared logic of egress_install and egress_runtime: every live node reaches every target.

Reaching a target only because the agent trusts an extra (corporate) CA means a
TLS-inspecting proxy sits in the path: that works, but is a warning (DESIGN.md §1).
"""

from __future__ import annotations

from sys import intern

from collector.plan import system_nodes
from collector.rules.model import Evidence, Verdict, count, names
from preflight.enums import REASONS
from preflight.v1 import report_pb2 as pb
from tests.support.memo_reference import PerReport

# target -> (reached, failure reason name, reached only through an extra CA, its issuer)
Reached = dict[str, tuple[bool, str, bool, str]]


def _results_of(report: pb.NodeReport) -> Reached:
    results: Reached = {}
    for e in report.egress:
        up = e.outcome == pb.OUTCOME_UP
        cert = e.certificate
        extra_ca = up and cert.trusted_by_extra_ca
        # Interned: every node names the same targets and issuers; one copy is kept.
        issuer = intern(cert.issuer)
        results[intern(e.target)] = (up, "" if up else REASONS.name(e.reason), extra_ca, issuer)
    return results


# One cache for both phases' rules: egress_install and egress_runtime read the same.
_RESULTS = PerReport(_results_of)


def evaluate_phase(view: Evidence, requirement: str, phase: str) -> Verdict:
    of_phase = view.profile.targets_of_phase(phase)
    targets = [t.name for t in of_phase]
    # `system` targets are required from system nodes only (the plan gives no others them).
    system = system_nodes(view.kube, view.profile.system_label)
    everywhere = [t.name for t in of_phase if t.scope == "all"]
    nodes = view.live_nodes
    if not nodes:
        return Verdict(
            requirement, "unknown", "no agent has reported recently", targets=tuple(targets)
        )
    # A mirrored target is named with its mirror: the address that failed is the mirror's.
    mirrors = dict(view.mirror_of)

    def shown(target: str) -> str:
        return f"{target} (mirror {mirrors[target]})" if target in mirrors else target

    failures: list[str] = []
    failing_nodes: set[str] = set()
    failing_targets: set[str] = set()
    intercepted: dict[str, set[str]] = {}  # issuer → targets reached only through it
    intercepted_nodes: set[str] = set()
    for node, results in zip(nodes, _RESULTS(nodes), strict=True):
        for target in targets if system is None or node.name in system else everywhere:
            result = results.get(target)
            if result is None:
                failures.append(f"{node.name} → {shown(target)}: not probed")
            elif not result[0]:
                failures.append(f"{node.name} → {shown(target)}: {result[1]}")
            else:
                if result[2]:
                    intercepted.setdefault(result[3], set()).add(target)
                    intercepted_nodes.add(node.name)
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
    if intercepted:
        issuers = "; ".join(
            f"{issuer or 'unknown issuer'} for {', '.join(sorted(t))}"
            for issuer, t in sorted(intercepted.items())
        )
        return Verdict(
            requirement,
            "warn",
            f"reached only through TLS interception by a trusted corporate CA: {issuers}",
            nodes=tuple(sorted(intercepted_nodes)),
            targets=tuple(sorted(set().union(*intercepted.values()))),
        )
    mirrored = [shown(t) for t in targets if t in mirrors]
    return Verdict(
        requirement,
        "pass",
        f"every node reaches every {phase} target "
        f"({count(len(nodes), 'node')} × {count(len(targets), 'target')})"
        + (f"; mirrored: {', '.join(mirrored)}" if mirrored else ""),
        targets=tuple(targets),
    )


def evaluate_install(view: Evidence) -> Verdict:
    return evaluate_phase(view, "egress_install", "install")


def evaluate_runtime(view: Evidence) -> Verdict:
    return evaluate_phase(view, "egress_runtime", "runtime")
