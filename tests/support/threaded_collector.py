"""A real collector served from a background thread, for synchronous tests (hypothesis).

Hypothesis drives plain functions; the collector needs an event loop. This runs one
CollectorService on its own loop in a daemon thread and talks to it the way clients
do: gRPC over loopback and HTTP over loopback.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import urllib.parse
from collections.abc import Coroutine
from typing import Any, TypeVar

import grpc

from collector.config import CollectorConfig
from collector.service import CollectorService
from preflight.v1 import report_pb2 as pb
from preflight.v1 import report_pb2_grpc as pb_grpc

T = TypeVar("T")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")


def strict_json(text: str) -> Any:
    """json.loads that refuses NaN and Infinity (which json.loads accepts by default)."""
    return json.loads(text, parse_constant=_reject_constant)


class ThreadedCollector:
    def __init__(self, config: CollectorConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.service: CollectorService = self.call(self._start(config))
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.service.grpc_port}")
        self.stub = pb_grpc.CollectorStub(self.channel)
        self._http: http.client.HTTPConnection | None = None
        self._raw = self.channel.unary_unary(
            "/preflight.v1.Collector/Report",
            request_serializer=lambda b: b,
            response_deserializer=pb.ReportAck.FromString,
        )

    @staticmethod
    async def _start(config: CollectorConfig) -> CollectorService:
        service = CollectorService(config)
        await service.start()
        return service

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def in_loop(self, function: Any, *args: Any) -> Any:
        async def run() -> Any:
            return function(*args)

        return self.call(run())

    def send(self, report: pb.NodeReport) -> grpc.StatusCode:
        """Sends over gRPC; the status code the collector answered."""
        return self.send_raw(report.SerializeToString())

    def send_raw(self, payload: bytes) -> grpc.StatusCode:
        try:
            self._raw(payload, timeout=10)
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
            return code
        return grpc.StatusCode.OK

    def get(self, path: str) -> tuple[int, str]:
        """GET over one kept-alive connection (thousands of examples: no handshake each)."""
        for attempt in (1, 2):
            if self._http is None:
                self._http = http.client.HTTPConnection(
                    "127.0.0.1", self.service.http_port, timeout=30
                )
            try:
                self._http.request("GET", path)
                response = self._http.getresponse()
                return response.status, response.read().decode()
            except (http.client.HTTPException, OSError):
                # The server closed an idle kept-alive connection: reconnect once.
                self._http.close()
                self._http = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def node_path(self, name: str) -> str:
        return "/api/v1/nodes/" + urllib.parse.quote(name, safe="")

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        self.channel.close()
        self.call(self.service.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
