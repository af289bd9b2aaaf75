"""Pushes reports to the collector over gRPC: latest snapshot only, capped backoff with jitter.

The channel never follows HTTPS_PROXY (`grpc.enable_http_proxy=0`): the egress
proxy being probed must never carry collector traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from pathlib import Path

import grpc
import grpc.aio

from agent.config import CollectorTls
from agent.identity import call_metadata, channel_credentials, tls_channel_options
from preflight.v1 import report_pb2 as pb
from preflight.v1 import report_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

INITIAL_BACKOFF_SECONDS = 0.5
REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def channel_options(max_backoff: float) -> list[tuple[str, int]]:
    backoff_ms = int(max_backoff * 1000)
    return [
        ("grpc.enable_http_proxy", 0),
        ("grpc.initial_reconnect_backoff_ms", int(INITIAL_BACKOFF_SECONDS * 1000)),
        ("grpc.min_reconnect_backoff_ms", int(INITIAL_BACKOFF_SECONDS * 1000)),
        ("grpc.max_reconnect_backoff_ms", max(backoff_ms, 1000)),
    ]


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
        extra_options: tuple[tuple[str, str], ...] = (),
    ) -> None:
        # `target` (default: `address`) is what the channel dials; agent.fanout passes
        # one resolved address of `address` and names the service in `extra_options`.
        self.address = address
        self.timeout = timeout
        self.max_backoff = max_backoff
        self.on_ack = on_ack
        self.token_file = token_file
        tls = tls or CollectorTls()
        credentials = channel_credentials(tls)
        options = [*channel_options(max_backoff), *tls_channel_options(tls), *extra_options]
        target = target or address
        self._channel = (
            grpc.aio.insecure_channel(target, options=options)
            if credentials is None
            else grpc.aio.secure_channel(target, credentials, options=options)
        )
        self._stub = pb_grpc.CollectorStub(self._channel)
        self._latest: pb.NodeReport | None = None
        self._pending = asyncio.Event()
        self.delivered = 0
        self.rejected = 0

    def submit(self, report: pb.NodeReport) -> None:
        """Replaces whatever was waiting: only the newest snapshot matters."""
        self._latest = report
        self._pending.set()

    async def _wait_for_collector(self, seconds: float) -> None:
        # Returns early the moment the channel is ready again.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._channel.channel_ready(), seconds)

    async def run(self) -> None:
        failures = 0
        while True:
            await self._pending.wait()
            report = self._latest
            assert report is not None
            report.sent_at.GetCurrentTime()
            try:
                ack = await self._stub.Report(
                    report, timeout=self.timeout, metadata=call_metadata(self.token_file)
                )
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
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
                await self._wait_for_collector(delay)
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
