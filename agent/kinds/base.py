"""What a probe kind is: the parts the runner, the push policy and the report need of it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from agent.blocking import BlockingExecutor
from agent.config import AgentConfig
from agent.hostfs import HostFS
from preflight.v1 import report_pb2 as pb

if TYPE_CHECKING:
    from agent.plan import AgentPlan

T = TypeVar("T")
# A probe is an argument-less coroutine factory: the runner owns the deadline.
Probe = Callable[[], Awaitable[T]]
# Extra time granted to probes that enforce their own deadlines before the runner's fires.
DEADLINE_SLACK_SECONDS = 2.0


@dataclass
class KindContext:
    """What a kind's factory may use: the config, the plan in force, the host."""

    config: AgentConfig
    node_name: str
    plan: AgentPlan
    host: HostFS
    # Shared by the host-fact kinds: one stuck bookkeeping for calls that may hang.
    blocking: BlockingExecutor
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        for close in self.closers:
            await close()


@dataclass(frozen=True)
class ProbeKind(Generic[T]):
    """One kind of probe, registered once in agent.kinds.KINDS.

    - `build`: the probe from config and plan (called once per agent);
    - `deadline`: the runner's hard deadline for one run;
    - `signature`: the part of a result that must be pushed at once when it changes
      (not timings or free space);
    - `section`: writes the result into its NodeReport section (agent.report maps);
    - `text`: the kind's lines of `preflight-agent --once --format text`.
    """

    name: str
    build: Callable[[KindContext], Probe[T]]
    deadline: Callable[[AgentConfig], float]
    signature: Callable[[T], object]
    section: Callable[[pb.NodeReport, T], None]
    text: Callable[[pb.NodeReport], list[str]]


AnyKind = ProbeKind[Any]
