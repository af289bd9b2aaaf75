"""The registry of the agent's probe kinds: the one list the runner and the report iterate.

Adding a kind: its probe in agent/probes/<kind>.py (plain results, no protobuf), its
NodeReport section in report.proto (`make proto`) and its mapping in agent/report.py,
a module here with its ProbeKind (factory, deadline, signature, section, text), and
one entry below. See docs/architecture.md.
"""

from __future__ import annotations

from agent.kinds import clock, egress, gpus, hardware, mounts
from agent.kinds.base import AnyKind, KindContext, ProbeKind

__all__ = ["KINDS", "AnyKind", "KindContext", "ProbeKind", "by_name"]

# Report and text order.
KINDS: tuple[AnyKind, ...] = (hardware.KIND, gpus.KIND, mounts.KIND, egress.KIND, clock.KIND)


def by_name(name: str) -> AnyKind:
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise KeyError(f"no probe kind {name!r} (known: {', '.join(k.name for k in KINDS)})")
