"""Per-report facts a rule derives, and its last verdict, kept between judgings.

The service judges about once a second while anything changes, but a node's report
changes only when it reports, and most reports are heartbeats that say what the last
one said (a new sequence and new timestamps, nothing a rule reads). Three layers keep
that per-second work proportional to what changed rather than to the cluster:

- `PerReport`: what a rule derives from one report, derived only for an entry whose
  report bytes were not seen on the previous call. A re-derived value equal to the
  node's previous one is replaced by that previous object ("same as last"), so that
  after a heartbeat the rule's inputs are the very objects of the last judging.
- `decoded`: the reports decoded recently, shared by every rule's PerReport (each
  rule derives in its own pass over the nodes, and would otherwise decode each new
  report once per rule). Bounded by bytes: when full, it starts afresh; a judging
  (collector.judging) empties it when it ends, so that it holds memory only meanwhile.
- `LastVerdict`: a rule's last verdict and the inputs it was judged from (compared
  with ==, element by element, identity first: a list of 10,000 unchanged values
  compares in tens of microseconds). The same inputs give the same verdict: rules are
  pure functions of what they read.

Each cache holds what it was last asked about and is replaced whole on every call,
never mutated in place: a concurrent caller (a `preflight check` in another thread)
sees one complete cache or the other, and none grows beyond one entry per node.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from itertools import compress
from operator import attrgetter, is_not
from typing import Generic, TypeVar, cast

from collector.rules.model import Verdict
from collector.state import NodeEntry, decode_report
from preflight.v1 import report_pb2 as pb

T = TypeVar("T")

# Reports decoded recently, for the rules' PerReports of one judging. 2 MiB of report
# bytes (~580 reports of bench_ingest's 8-GPU node, 3.6 KB each; about three times that
# decoded) cover a second of heartbeats and changes at 10,000 nodes; a judging that
# decodes more than that (a cold one) decodes per rule, as before.
DECODED_BYTES = 2 << 20

_name = attrgetter("name")
_raw = attrgetter("raw")
# The names and bytes of the entries last asked about: every rule of a judging asks
# about the same tuple (Evidence.live_nodes), read once for all of them.
_columns: tuple[object, list[str], list[bytes]] = ((), [], [])


def _names_and_bytes(entries: Sequence[NodeEntry]) -> tuple[list[str], list[bytes]]:
    global _columns
    last = _columns
    if last[0] is entries:
        return last[1], last[2]
    names, raws = list(map(_name, entries)), list(map(_raw, entries))
    _columns = (entries, names, raws)
    return names, raws


class _Decoded:
    """raw → its decoded report, the most recent DECODED_BYTES of them (thread-safe)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._reports: dict[bytes, pb.NodeReport] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def __call__(self, raw: bytes) -> pb.NodeReport:
        report = self._reports.get(raw)
        if report is not None:
            return report
        report = decode_report(raw)  # counted there (tests read decode_report.decoded)
        if len(raw) > self.limit:
            return report
        with self._lock:
            if self._bytes + len(raw) > self.limit:
                # Full: started afresh (a judging that decodes more than the bound, a cold
                # one, gains nothing from keeping the oldest either).
                self._reports, self._bytes = {}, 0
            if raw not in self._reports:
                self._reports[raw] = report
                self._bytes += len(raw)
        return report

    def forget(self) -> None:
        """Drops every report held (a judging ends: the next decodes other reports)."""
        with self._lock:
            self._reports, self._bytes = {}, 0


decoded = _Decoded(DECODED_BYTES)


class PerReport(Generic[T]):
    """`derive(report)` for many entries, reusing the results for reports seen last time.

    Values must compare equal exactly when the rule could not tell them apart (plain
    frozen data): an equal re-derived value is dropped for the previous object, and so
    is each equal part of a tuple.
    """

    def __init__(self, derive: Callable[[pb.NodeReport], T]) -> None:
        self._derive = derive
        # As of the last call: the entries' names, report bytes and derived values.
        self._last: tuple[list[str], list[bytes], list[T]] = ([], [], [])
        self.derived = 0  # how many times `derive` ran (tests read it)

    def __call__(self, entries: Sequence[NodeEntry]) -> list[T]:
        return self.named(entries)[1]

    def named(self, entries: Sequence[NodeEntry]) -> tuple[list[str], list[T]]:
        """The entries' names and their values (the names: for a LastVerdict key)."""
        names, raws = _names_and_bytes(entries)
        old_names, old_raws, old_values = self._last
        values: list[T]
        # Positions to derive, each with the node's last value where it had one.
        todo: list[tuple[int, T | None]]
        if names == old_names:
            # The same nodes as last time (the usual judging): only the positions whose
            # bytes are other objects are looked at, found by C loops.
            todo = [
                (i, old_values[i]) for i in compress(range(len(raws)), map(is_not, raws, old_raws))
            ]
            # Nothing new: the very list of last time (callers never change it), so that
            # what is built from it can be kept by identity (collector.rules.sizes).
            values = old_values.copy() if todo else old_values
        else:
            before = dict(zip(old_names, zip(old_raws, old_values, strict=True), strict=True))
            values = []
            todo = []
            for i, (name, raw) in enumerate(zip(names, raws, strict=True)):
                held = before.get(name)
                if held is not None and held[0] == raw:
                    values.append(held[1])
                    continue
                values.append(None)  # type: ignore[arg-type]  # derived below
                todo.append((i, None if held is None else held[1]))
        # Shared decodes only where they fit (a heartbeat's, a change's): a cold judging's
        # would only be dropped again before the next rule asks.
        decode = decoded if sum(len(raws[i]) for i, _ in todo) <= decoded.limit else decode_report
        derive = self._derive
        for i, last in todo:
            value = derive(decode(raws[i]))
            values[i] = value if last is None else _same_as(last, value)
        derived = len(todo)
        self._last = (names, raws, values)
        self.derived += derived
        return names, values


def _same_as(old: T, new: T) -> T:
    """`new`, or as much of `old` as equals it: the whole, or the equal parts of a tuple
    (a rule that derives parts that change at different rates keeps each part's object)."""
    if new == old:
        return old
    # Plain tuples only: a named tuple or other subclass rebuilt as a tuple would not be
    # the value the rule derived.
    plain = type(new) is tuple and type(old) is tuple
    if plain and isinstance(new, tuple) and isinstance(old, tuple) and len(new) == len(old):
        return cast(T, tuple(o if o == n else n for o, n in zip(old, new, strict=True)))
    return new


class LastVerdict:
    """A rule's last verdict, given again while the rule's inputs are the same."""

    def __init__(self) -> None:
        self._last: tuple[object, Verdict] | None = None
        self.judged = 0  # how many times the rule judged afresh (tests read it)

    def __call__(self, inputs: object, judge: Callable[[], Verdict]) -> Verdict:
        last = self._last
        if last is not None and last[0] == inputs:
            # Kept with these inputs: what compared equal by value this time (new
            # objects of the same content) compares by identity next time.
            self._last = (inputs, last[1])
            return last[1]
        verdict = judge()
        self._last = (inputs, verdict)
        self.judged += 1
        return verdict
