"""The clock_sync rule (collector/rules/clock_sync.py) as on main, kept as the reference.

A property test (tests/collector/test_rules_reference.py) checks that the collector's
fast paths give the same verdicts as this, reasons and evidence included, for random
reports and histories. Not used by the collector.

Original module docstring follows.

clock_sync: every node's clock is NTP-synchronised and close to the collector's.

NVIDIA Run:ai 2.20+ require "Nodes ... synchronized by time using NTP"; Run:ai's
preinstall-diagnostics fails pods whose clocks differ by more than a minute. Two facts:

- the kernel's NTP state, from the agent's adjtimex probe (report section `clock`);
- the node's clock offset to the collector's, measured by the collector on every report
  (`NodeEntry.clock_skew_seconds`: the report's sent_at minus the receipt time, so it
  includes the network delay, far below the bound).

Off by more than the profile's `clock_sync.max_skew` fails; unsynchronised but within the
bound warns (the clock will drift); a node whose agent does not report its NTP state is
`unknown` unless something else already decides.
"""

from __future__ import annotations

from collector.rules.model import Evidence, Verdict, count, names
from preflight.v1 import report_pb2 as pb
from tests.support.memo_reference import PerReport

REQUIREMENT = "clock_sync"
DEFAULT_MAX_SKEW = 60.0


def _synchronised(report: pb.NodeReport) -> bool | None:
    """The kernel's NTP state as the agent read it; None where it could not or did not."""
    clock = report.clock
    if not report.HasField("clock") or not clock.available:
        return None
    return clock.synchronised


_SYNCHRONISED = PerReport(_synchronised)


def evaluate(view: Evidence) -> Verdict:
    rule = view.profile.clock_sync
    bound = rule.max_skew if rule else DEFAULT_MAX_SKEW
    nodes = view.live_nodes
    if not nodes:
        return Verdict(REQUIREMENT, "unknown", "no agent has reported recently")
    off: list[str] = []
    unsynced: list[str] = []
    unreported: list[str] = []
    worst = 0.0
    for node, synchronised in zip(nodes, _SYNCHRONISED(nodes), strict=True):
        skew = node.clock_skew_seconds
        worst = max(worst, abs(skew))
        if abs(skew) > bound:
            off.append(f"{node.name} ({skew:+.1f} s)")
        if synchronised is None:
            unreported.append(node.name)
        elif not synchronised:
            unsynced.append(node.name)
    if off:
        return Verdict(
            REQUIREMENT,
            "fail",
            f"{count(len(off), 'node')} off the collector's clock by more than {bound:g} s: "
            f"{names(off)}",
            nodes=tuple(o.split(" ", 1)[0] for o in off),
        )
    if unsynced:
        return Verdict(
            REQUIREMENT,
            "warn",
            f"{count(len(unsynced), 'node')} not NTP-synchronised (kernel clock state), "
            f"still within {bound:g} s: {names(unsynced)}",
            nodes=tuple(unsynced),
        )
    if unreported:
        return Verdict(
            REQUIREMENT,
            "unknown",
            f"{count(len(unreported), 'node')} report no kernel NTP state: {names(unreported)} "
            f"(clocks within {bound:g} s)",
            nodes=tuple(unreported),
        )
    return Verdict(
        REQUIREMENT,
        "pass",
        f"{count(len(nodes), 'node')} NTP-synchronised, within {worst:.1f} s of the collector "
        f"(bound {bound:g} s)",
    )
