"""Rules run so that one node's data cannot stop the judging of the others.

A rule that raises over the whole cluster is run again on each node alone to find
the node(s) whose data it cannot judge (O(nodes) cheap calls, only on that path);
those nodes are marked unusable with the reason, counted, and left out of every rule,
and the rule is judged on the rest. A rule that still raises (a bug not tied to
one node) reads `unknown` with the reason instead of taking the other verdicts along.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from collector.isolation import FaultLog, describe
from collector.rules import RULES, Rule
from collector.rules.memo import decoded
from collector.rules.model import Evidence, Verdict
from collector.state import NodeEntry


@dataclass(frozen=True)
class Judgement:
    verdicts: tuple[Verdict, ...]
    # Node name → why its data could not be judged.
    unusable: tuple[tuple[str, str], ...] = ()


def _without(view: Evidence, names: set[str] | frozenset[str]) -> Evidence:
    nodes = tuple(n for n in view.state.nodes if n.name not in names)
    return dataclasses.replace(view, state=dataclasses.replace(view.state, nodes=nodes))


def _only(view: Evidence, node: NodeEntry) -> Evidence:
    return dataclasses.replace(view, state=dataclasses.replace(view.state, nodes=(node,)))


def _culprits(rule: Rule, view: Evidence) -> dict[str, str]:
    found: dict[str, str] = {}
    for node in view.state.nodes:
        try:
            rule(_only(view, node))
        except Exception as error:
            found[node.name] = describe(error)
    return found


def evaluate_isolated(view: Evidence, faults: FaultLog) -> Judgement:
    unusable: dict[str, str] = {}
    verdicts: list[Verdict] = []
    current = view
    # The requirements the view's profile judges, in RULES order (as evaluate_all).
    wanted = view.profile.requirement_phases()
    rules = [(rid, rule) for rid, rule in RULES.items() if rid in wanted]
    for requirement, rule in rules:
        try:
            verdicts.append(rule(current))
            continue
        except Exception as error:
            first = error
        culprits = _culprits(rule, current)
        for name, reason in culprits.items():
            faults.record("rules", name, first)
            unusable[name] = f"{requirement}: {reason}"
        if culprits:
            current = _without(view, set(unusable))
        try:
            verdicts.append(rule(current))
        except Exception as error:
            faults.record("rules", "(cluster)", error)
            verdicts.append(Verdict(requirement, "unknown", f"rule error: {describe(error)}"))
    if unusable:
        # Rules judged before a culprit was found saw its data: judge them again without it.
        verdicts = [_safe(rule, current, requirement, faults) for requirement, rule in rules]
    # The reports decoded for this judging's rules are not needed by the next one.
    decoded.forget()
    return Judgement(tuple(verdicts), tuple(sorted(unusable.items())))


def _safe(rule: Rule, view: Evidence, requirement: str, faults: FaultLog) -> Verdict:
    try:
        return rule(view)
    except Exception as error:
        faults.record("rules", "(cluster)", error)
        return Verdict(requirement, "unknown", f"rule error: {describe(error)}")
