"""What one egress probe knows so far, shared by its phases and its deadline/error handlers.

A phase that cannot go on raises `Failure` (reason, phase, message); `probe` turns it
into the result. Phase timings accumulate in `result.phases` between `start` and `stop`.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from agent.config import EgressConfig, EgressTarget
from agent.probes.proxy_env import ProxyEndpoint
from agent.probes.results import DnsResult, EgressResult, FailureReason, Phase

USER_AGENT = "preflight-agent"
READ_SIZE = 65536


class Failure(Exception):
    """A phase that cannot go on: the reason and phase the result will carry."""

    def __init__(self, reason: FailureReason, phase: Phase, message: str) -> None:
        super().__init__(message)
        self.reason: FailureReason = reason
        self.phase: Phase = phase
        self.message = message


@dataclass
class ProbeState:
    """What one probe knows so far; shared with the deadline and error handlers."""

    target: EgressTarget
    config: EgressConfig
    result: EgressResult
    deadline_at: float
    phase: Phase | None = None
    phase_started: float = 0.0
    last_phase: Phase | None = None
    writer: asyncio.StreamWriter | None = None
    sockets: list[socket.socket] = field(default_factory=list)
    dns_task: asyncio.Task[DnsResult] | None = None
    # Where the TLS connection goes, kept for the second (unverified) handshake.
    sockaddr: Any = None
    family: int = socket.AF_UNSPEC
    proxy: ProxyEndpoint | None = None

    def start(self, phase: Phase) -> None:
        self.phase = phase
        self.last_phase = phase
        self.phase_started = time.perf_counter()

    def stop(self) -> None:
        if self.phase is None:
            return
        elapsed = time.perf_counter() - self.phase_started
        phases = self.result.phases
        phases[self.phase] = phases.get(self.phase, 0.0) + elapsed
        self.phase = None

    def remaining(self) -> float:
        return self.deadline_at - asyncio.get_running_loop().time()


def fail(result: EgressResult, reason: FailureReason, phase: Phase, message: str) -> None:
    result.up = False
    result.reason = reason
    result.failed_phase = phase
    result.message = message


def authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_sockaddr(sockaddr: Any) -> str:
    return authority(str(sockaddr[0]), int(sockaddr[1]))
