"""Pushes reports to the collector over gRPC: latest snapshot only, capped backoff with jitter.

The channel is agent.wire (gRPC over h2, not grpcio: docs/performance.md, "Agent
footprint"). It never follows HTTPS_PROXY: it reads no proxy setting at all, so the
egress proxy being probed never carries collector traffic.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from pathlib import Path

from agent.config import CollectorTls
from agent.identity import call_metadata, client_ssl_context, verification_name
from agent.wire import Channel, RpcError, StatusCode
from preflight.v1 import report_pb2 as pb

log = logging.getLogger(__name__)

INITIAL_BACKOFF_SECONDS = 0.5
REFUSED = (StatusCode.UNAUTHENTICATED, StatusCode.PERMISSION_DENIED)
REPORT_METHOD = "/preflight.v1.Collector/Report"


def backoff_delay(failures: int, cap: float) -> float:
    """Capped exponential backoff with full jitter in its upper half."""
    ceiling = min(cap, INITIAL_BACKOFF_SECONDS * 2 ** max(failures - 1, 0))
    return random.uniform(ceiling / 2, ceiling)


class ReportClient:
    """Holds at most one pending report (the latest) and delivers it."""

    def __init__(
        self,
        address: str,
        *,
        timeout: float,
        max_backoff: float,
        on_ack: Callable[[pb.ReportAck], None] | None = None,
        tls: CollectorTls | None = None,
        token_file: Path | None = None,
        target: str | None = None,
        authority: str | None = None,
        server_name: str | None = None,
    ) -> None:
        # `target` (default: `address`) is what the channel dials; agent.fanout passes
        # one resolved address of `address`, the service as `authority` and, with TLS,
        # the name its certificate carries as `server_name` (tls.server_name wins).
        self.address = address
        self.timeout = timeout
        self.max_backoff = max_backoff
        self.on_ack = on_ack
        self.token_file = token_file
        tls = tls or CollectorTls()
        self._channel = Channel(
            target or address,
            ssl_context=client_ssl_context(tls),
            server_name=verification_name(tls) or server_name,
            authority=authority,
        )
        self._latest: pb.NodeReport | None = None
        self._pending = asyncio.Event()
        self.delivered = 0
        self.rejected = 0

    def submit(self, report: pb.NodeReport) -> None:
        """Replaces whatever was waiting: only the newest snapshot matters."""
        self._latest = report
        self._pending.set()

    async def _wait_for_collector(self, seconds: float, error: RpcError) -> None:
        if error.code() == StatusCode.UNAVAILABLE and not self._channel.connected:
            # Unreachable: returns early the moment the collector accepts a connection.
            await self._channel.wait_ready(seconds)
        else:
            # The collector answered (refused, deadline, ...): the full pause.
            await asyncio.sleep(seconds)

    async def _call(self, report: pb.NodeReport) -> pb.ReportAck:
        try:
            answer = await self._channel.unary(
                REPORT_METHOD,
                report.SerializeToString(),
                timeout=self.timeout,
                metadata=call_metadata(self.token_file) or (),
            )
        except RpcError:
            raise
        except Exception as unexpected:  # a bug must not end delivery for good: back off
            log.exception("report to %s failed unexpectedly", self.address)
            raise RpcError(StatusCode.UNKNOWN, repr(unexpected)) from None
        ack = pb.ReportAck()
        try:
            ack.ParseFromString(answer)
        except Exception as error:  # protobuf's DecodeError; a broken answer, not a crash
            raise RpcError(StatusCode.INTERNAL, f"undecodable ReportAck: {error}") from None
        return ack

    async def run(self) -> None:
        failures = 0
        while True:
            await self._pending.wait()
            report = self._latest
            assert report is not None
            report.sent_at.GetCurrentTime()
            try:
                ack = await self._call(report)
            except RpcError as error:
                if error.code() == StatusCode.INVALID_ARGUMENT:
                    # Resending the same report cannot help; wait for the next one.
                    self.rejected += 1
                    log.error("collector rejected report %d: %s", report.sequence, error.details())
                    if self._latest is report:
                        self._pending.clear()
                    continue
                failures += 1
                delay = backoff_delay(failures, self.max_backoff)
                # Refused identity: the token may be rotated or fixed, so keep retrying.
                what = "refused this agent" if error.code() in REFUSED else "unreachable"
                log.warning(
                    "collector %s %s (%s: %s); retrying in %.1fs",
                    self.address,
                    what,
                    error.code().name,
                    error.details(),
                    delay,
                )
                await self._wait_for_collector(delay, error)
                continue
            if failures:
                log.info("collector %s reachable again", self.address)
            failures = 0
            self.delivered += 1
            if self._latest is report:
                self._pending.clear()
            if self.on_ack is not None:
                self.on_ack(ack)

    async def close(self) -> None:
        await self._channel.close()
