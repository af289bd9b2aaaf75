"""clock_sync: every node's clock is NTP-synchronised and close to the collector's.

NVIDIA Run:ai 2.20+ require "Nodes ... synchronized by time using NTP"; Run:ai's
preinstall-diagnostics fails pods whose clocks differ by more than a minute. Two facts:

- the kernel's NTP state, from the agent's adjtimex probe (report section `clock`);
- the node's clock offset to the collector's, measured by the collector on every report
  (`NodeEntry.clock_skew_seconds`: the report's sent_at minus the receipt time, so it
  includes the network delay, far below the bound).

Off by more than the profile's `clock_sync.max_skew` fails; unsynchronised but within the
bound warns (the clock will drift); a node whose agent does not report its NTP state is
`unknown` unless something else already decides.

The skews change with every report (by the network's delay), the verdict only with the
nodes off the bound and the worst skew as shown (0.1 s): those, the nodes and their NTP
states are its inputs, and while they are the same the last verdict is given again.
"""

from __future__ import annotations

from itertools import chain
from operator import attrgetter

from collector.rules.memo import LastVerdict, PerReport
from collector.rules.model import Evidence, Verdict, count
from collector.rules.model import names as names_of
from preflight.v1 import report_pb2 as pb

REQUIREMENT = "clock_sync"
DEFAULT_MAX_SKEW = 60.0


def _synchronised(report: pb.NodeReport) -> bool | None:
    """The kernel's NTP state as the agent read it; None where it could not or did not."""
    clock = report.clock
    if not report.HasField("clock") or not clock.available:
        return None
    return clock.synchronised


_SYNCHRONISED = PerReport(_synchronised)
_LAST = LastVerdict()
_skew = attrgetter("clock_skew_seconds")


def evaluate(view: Evidence) -> Verdict:
    rule = view.profile.clock_sync
    bound = rule.max_skew if rule else DEFAULT_MAX_SKEW
    nodes = view.live_nodes
    if not nodes:
        return Verdict(REQUIREMENT, "unknown", "no agent has reported recently")
    names, synchronised = _SYNCHRONISED.named(nodes)
    skews = list(map(_skew, nodes))
    # max() as a running max(worst, abs(skew)) from 0.0 would keep it (NaN included).
    worst = max(chain((0.0,), map(abs, skews)))
    off = (
        [f"{n} ({s:+.1f} s)" for n, s in zip(names, skews, strict=True) if abs(s) > bound]
        if worst > bound
        else []
    )
    shown = f"{worst:.1f}"
    return _LAST(
        (bound, names, synchronised, off, shown),
        lambda: _judge(bound, names, synchronised, off, shown),
    )


def _judge(
    bound: float, names: list[str], synchronised: list[bool | None], off: list[str], worst: str
) -> Verdict:
    unsynced: list[str] = []
    unreported: list[str] = []
    for name, state in zip(names, synchronised, strict=True):
        if state is None:
            unreported.append(name)
        elif not state:
            unsynced.append(name)
    if off:
        return Verdict(
            REQUIREMENT,
            "fail",
            f"{count(len(off), 'node')} off the collector's clock by more than {bound:g} s: "
            f"{names_of(off)}",
            nodes=tuple(o.split(" ", 1)[0] for o in off),
        )
    if unsynced:
        return Verdict(
            REQUIREMENT,
            "warn",
            f"{count(len(unsynced), 'node')} not NTP-synchronised (kernel clock state), "
            f"still within {bound:g} s: {names_of(unsynced)}",
            nodes=tuple(unsynced),
        )
    if unreported:
        return Verdict(
            REQUIREMENT,
            "unknown",
            f"{count(len(unreported), 'node')} report no kernel NTP state: "
            f"{names_of(unreported)} (clocks within {bound:g} s)",
            nodes=tuple(unreported),
        )
    return Verdict(
        REQUIREMENT,
        "pass",
        f"{count(len(names), 'node')} NTP-synchronised, within {worst} s of the collector "
        f"(bound {bound:g} s)",
    )
