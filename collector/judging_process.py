"""Judges every requirement in a child process (collector.child), fed what changed.

A judging of 10,000 nodes holds ~0.2 s of Python every second: at that size the
largest share of the collector's GIL, which gRPC's Report handlers wait behind. The
child keeps its own copy of every node's entry (a few KB each: the report bytes and
the facts ingest extracted) and of the profile and Kubernetes view; each judging sends
only the entries that changed since the last one (a new report, or a node gone stale)
and the names of the nodes that left, and the child runs the very same rules
(collector.judging.evaluate_isolated) over its copy, with their per-report caches
warm in its memory. Hysteresis, faults and the verdicts' publication stay in the
parent.

The answer sends back in full only the verdicts that are not the very objects of the
previous answer (the rules keep their verdict while their inputs are the same), the
others by their position there.

Each message names the one before it: a child that did not apply that one (a new
child, after a failure) answers "resync" and gets everything again. Without an answer
the parent judges in process, so verdicts never stop.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterable
from itertools import compress
from operator import attrgetter, is_not, ne
from typing import Any

from collector.child import ChildProcess, serve
from collector.isolation import FaultLog
from collector.judging import Judgement, evaluate_isolated
from collector.kube.facts import KubeFacts
from collector.rules.model import Evidence, Verdict
from collector.state import AgentReports, NodeEntry
from preflight.profile import Profile

__all__ = ["Judged", "JudgingProcess"]

# A judging (1 s cold at 10,000 nodes here, ~0.2 s warm) not answered within this means
# a stuck child; the parent judges in process, within the verdicts' staleness bound.
ANSWER_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class Judged:
    """A judgement from the child, with what it cost there."""

    judgement: Judgement
    faults: int  # faults the rules hit (counted in the parent's FaultLog)
    cpu_seconds: float  # the child's CPU time for this judging
    # The child's process CPU time when it answered: the difference between two answers
    # is all it spent on a judging, unpickling included (bench/bench_judging.py).
    process_cpu_seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class _Answer:
    """What the child sends back: a Judged whose verdicts that are the very objects of its
    previous answer (a rule's kept verdict, collector.rules.memo) go as their position
    there. The gpu_nodes verdict of 10,000 GPU nodes names every one of them: unpickled
    on every judging it cost the parent a millisecond of its GIL for nothing new."""

    verdicts: tuple[Verdict | int, ...]
    unusable: tuple[tuple[str, str], ...]
    faults: int
    cpu_seconds: float
    process_cpu_seconds: float


# The AgentReports fields other than the nodes, sent with every judging.
_COUNTS = tuple(f.name for f in dataclasses.fields(AgentReports) if f.name != "nodes")
# Per node, in the snapshot's order: name, report bytes, up.
_Columns = tuple[list[str], list[bytes], list[bool]]
_name, _raw, _up = attrgetter("name"), attrgetter("raw"), attrgetter("up")


class JudgingProcess:
    """evaluate_isolated in a child process that holds a copy of the nodes."""

    def __init__(self) -> None:
        self.child = ChildProcess("collector.judging_process", "judging")
        self._lock = threading.Lock()
        # What the child holds, as of its last answer: the nodes' names, report bytes
        # and up flags, in the snapshot's order.
        self._sent: _Columns = ([], [], [])
        self._profile: Profile | None = None
        self._kube: KubeFacts | None = None
        self._epoch = 0  # 0: the child holds nothing of ours
        self._answered: tuple[Verdict, ...] = ()  # the verdicts of the child's last answer
        self.resyncs = 0
        self.sent_entries = 0  # entries sent, all judgings (tests read it)
        self.verdicts_kept = 0  # verdicts answered by position (tests read it)

    def start(self) -> None:
        self.child.start()

    def evaluate(self, view: Evidence) -> Judged | None:
        """The child's judgement of `view`; None when it gave none (judge in process)."""
        with self._lock:
            for _ in range(2):
                message, sent = self._message(view)
                answer = self.child.call(message, ANSWER_SECONDS, _is_answer)
                if answer is None:
                    self._forget()
                    return None
                if answer == "resync":
                    self.resyncs += 1
                    self._forget()
                    continue
                assert isinstance(answer, _Answer)
                judged = self._judged(answer)
                if judged is None:
                    self._forget()
                    return None
                self._sent, self._profile, self._kube = sent, view.profile, view.kube
                self._epoch = message["epoch"]
                self.sent_entries += len(message["changed"])
                return judged
            return None

    def _judged(self, answer: _Answer) -> Judged | None:
        """The answer with every verdict in full; None if it names one this side lacks."""
        last = self._answered
        verdicts: list[Verdict] = []
        for verdict in answer.verdicts:
            if isinstance(verdict, int):
                if not 0 <= verdict < len(last):
                    return None  # out of step with the child: start again from nothing
                verdict = last[verdict]
                self.verdicts_kept += 1
            verdicts.append(verdict)
        self._answered = tuple(verdicts)
        judgement = Judgement(self._answered, answer.unusable)
        return Judged(judgement, answer.faults, answer.cpu_seconds, answer.process_cpu_seconds)

    def _forget(self) -> None:
        self._sent, self._profile, self._kube, self._epoch = ([], [], []), None, None, 0
        self._answered = ()

    def _message(self, view: Evidence) -> tuple[dict[str, Any], _Columns]:
        nodes = view.state.nodes
        sent = (list(map(_name, nodes)), list(map(_raw, nodes)), list(map(_up, nodes)))
        names, raws, ups = sent
        old_names, old_raws, old_ups = self._sent
        # The bytes by identity: a new report is a new bytes object (collector.state).
        removed: list[str] = []
        if names == old_names:
            # The same nodes as last time (the usual judging): the changed positions are
            # found by C loops, not a Python loop over every node.
            positions = range(len(nodes))
            at: Iterable[int] = compress(positions, map(is_not, raws, old_raws))
            if ups != old_ups:  # rarely: a node went stale or came back
                at = sorted({*at, *compress(positions, map(ne, ups, old_ups))})
            changed = [nodes[i] for i in at]
        else:
            held = dict(zip(old_names, zip(old_raws, old_ups, strict=True), strict=True))
            changed = []
            for node in nodes:
                last = held.get(node.name)
                if last is None or last[0] is not node.raw or last[1] != node.up:
                    changed.append(node)
            present = set(names)
            removed = [name for name in old_names if name not in present]
        message = {
            "after": self._epoch,
            "epoch": self._epoch + 1,
            "changed": changed,
            "removed": removed,
            # Sent again only when replaced (both are immutable, replaced whole).
            "profile": view.profile if view.profile is not self._profile else None,
            "kube": view.kube if view.kube is not self._kube else None,
            "counts": {name: getattr(view.state, name) for name in _COUNTS},
            "now": view.now,
            "cluster_domain": view.cluster_domain,
            "mirror_of": view.mirror_of,
        }
        return message, sent

    def close(self) -> None:
        self.child.close()


def _is_answer(answer: object) -> bool:
    return answer == "resync" or isinstance(answer, _Answer)


class _Copy:
    """The child's side: the parent's nodes, profile and Kubernetes view, as last sent."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeEntry] = {}
        self.order: list[str] = []
        self.profile: Profile | None = None
        self.kube: KubeFacts | None = None
        self.epoch = 0
        self.faults = FaultLog()  # logs here what the rules hit; the parent counts
        self.answered: tuple[Verdict, ...] = ()  # the verdicts of the last answer

    def handle(self, message: object) -> object:
        m: dict[str, Any] = message  # type: ignore[assignment]
        if m["after"] == 0:  # everything, from the start
            self.nodes, self.order, self.profile, self.kube = {}, [], None, None
            self.answered = ()
        elif m["after"] != self.epoch:
            return "resync"
        joined = False
        for entry in m["changed"]:
            joined |= entry.name not in self.nodes
            self.nodes[entry.name] = entry
        for name in m["removed"]:
            del self.nodes[name]
        if joined or m["removed"]:
            self.order = sorted(self.nodes)  # the parent's snapshot order
        if m["profile"] is not None:
            self.profile = m["profile"]
        if m["kube"] is not None:
            self.kube = m["kube"]
        self.epoch = m["epoch"]
        if self.profile is None or self.kube is None:
            return "resync"
        view = Evidence(
            state=AgentReports(nodes=tuple(map(self.nodes.__getitem__, self.order)), **m["counts"]),
            profile=self.profile,
            now=m["now"],
            kube=self.kube,
            cluster_domain=m["cluster_domain"],
            mirror_of=m["mirror_of"],
        )
        started = time.thread_time()
        before = sum(count for _, count in self.faults.counts())
        judgement = evaluate_isolated(view, self.faults)
        faults = sum(count for _, count in self.faults.counts()) - before
        last = self.answered
        verdicts = tuple(
            i if i < len(last) and last[i] is verdict else verdict
            for i, verdict in enumerate(judgement.verdicts)
        )
        self.answered = judgement.verdicts
        return _Answer(
            verdicts,
            judgement.unusable,
            faults,
            time.thread_time() - started,
            time.process_time(),
        )


if __name__ == "__main__":
    # From the module as imported, not this __main__: an answer pickled from here must
    # unpickle in the parent as collector.judging_process._Answer.
    from collector import judging_process

    serve("judging", judging_process._Copy().handle)
