"""What JudgingProcess sends the child of a snapshot, as on main, kept as the reference.

collector/judging_process.py finds the changed entries by C loops over columns of the
snapshot; a property test (tests/collector/test_judging_process.py) checks that it sends
exactly the entries and removals this per-node loop (main's `_message`) sends. Not used
by the collector.
"""

from __future__ import annotations

from collections.abc import Sequence

from collector.state import NodeEntry

Held = dict[str, tuple[bytes, bool]]


def changes(previous: Held, nodes: Sequence[NodeEntry]) -> tuple[list[str], list[str], Held]:
    """(names of the entries to send, names removed, what the child then holds)."""
    sent: Held = {}
    changed: list[NodeEntry] = []
    for node in nodes:
        held = previous.get(node.name)
        # The bytes by identity: a new report is a new bytes object (collector.state).
        if held is None or held[0] is not node.raw or held[1] != node.up:
            changed.append(node)
        sent[node.name] = (node.raw, node.up)
    removed = [name for name in previous if name not in sent]
    return [n.name for n in changed], removed, sent
