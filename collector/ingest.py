"""The gRPC side of the collector: the Report servicer and the standard health service.

Report is registered with a raw-bytes handler so that a malformed or oversized
message is rejected with a reason and counted, instead of dying inside gRPC's
deserializer where nobody sees it. It is registered as request-streaming (the wire
is the same for a unary client): a message beyond gRPC's own ceiling then still
reaches the handler, as a call without any message, and is counted too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from collector.auth import ANY_NODE, Authenticator, AuthFailure, Identity, NoAuth
from collector.ratelimit import RateLimiter
from collector.state import ClusterState, Rejected
from preflight.v1 import report_pb2 as pb

log = logging.getLogger(__name__)

SERVICE_NAME = "preflight.v1.Collector"
# gRPC's own ceiling sits above the configured limit so oversize reports reach
# our handler, get a reason and are counted; beyond it gRPC refuses by itself.
GRPC_CEILING_FACTOR = 4
LOG_EVERY_SECONDS = 10.0

# The answer to each refusal: a retry cannot help INVALID_ARGUMENT; the others may
# succeed later (a rotated token, a slower pace), so the agent backs off and retries.
STATUS_OF_REASON = {
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "identity_mismatch": grpc.StatusCode.PERMISSION_DENIED,
    "rate_limited": grpc.StatusCode.RESOURCE_EXHAUSTED,
}


# Names of the Kubernetes nodes when the API is readable, else None (standalone).
KnownNodes = Callable[[], Collection[str] | None]


class ReportServicer:
    def __init__(
        self,
        state: ClusterState,
        heartbeat_interval: float,
        plan_for: Callable[[str], pb.ProbePlan] | None = None,
        authenticator: Authenticator | None = None,
        known_nodes: KnownNodes = lambda: None,
    ) -> None:
        self.state = state
        self.heartbeat_interval = heartbeat_interval
        # The node's probe plan, sent in every ack (collector.plan.PlanBook.for_node).
        self.plan_for = plan_for
        self.authenticator: Authenticator = authenticator or NoAuth()
        limits = state.limits
        self.rate_limiter = RateLimiter(limits.min_report_interval, limits.report_burst)
        self.known_nodes = known_nodes
        self._logged: dict[str, float] = {}

    async def report_stream(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ReportAck:
        messages: list[bytes] = []
        message = b""
        async for message in requests:
            messages.append(message)
            if len(messages) > 1:
                break  # a unary client sends exactly one; never buffer a stream of them
        messages_seen = len(messages)
        if messages_seen == 1:
            # Handed over, not kept here: gRPC keeps an aborted call's frames in a
            # reference cycle, and this frame must not hold the bytes of a refused report.
            message = b""
            return await self.report(messages.pop(), context)
        messages.clear()
        message = b""
        # gRPC drops a message over its ceiling before we see it: the call arrives empty.
        reason = "message_too_large" if not messages_seen else "malformed"
        detail = (
            "no message: larger than gRPC's receive ceiling, or none sent"
            if not messages_seen
            else f"{messages_seen} messages in one Report call"
        )
        self._refuse(reason, detail)
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{reason}: {detail}")
        raise AssertionError("unreachable: abort raises")

    async def report(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> pb.ReportAck:
        identity: Identity | None = None
        failure: tuple[grpc.StatusCode, str, str | None] | None = None
        try:
            # Who is asking comes first: nothing of an unauthenticated report is read.
            identity = await self.authenticator.authenticate(context.invocation_metadata())
        except AuthFailure as error:
            failure = (error.code, error.detail, error.reason)
        if failure is not None or identity is None:
            del raw  # not kept alive by the abort's traceback (see _store)
            code, detail, reason = failure or (grpc.StatusCode.UNAUTHENTICATED, "no identity", None)
            if reason is not None:
                self.state.count_rejection(reason)
            # The peer is what an operator traces a forged or misconfigured agent by.
            self._log_throttled(
                "refused", reason or "unauthenticated", f"{detail} (peer {context.peer()})"
            )
            await context.abort(code, detail)
            raise AssertionError("unreachable: abort raises")
        node, refusal = self._store(raw, time.time(), identity)
        del raw  # a refused 4 MiB report must not live on in the abort's traceback
        if refusal is not None:
            reason, detail = refusal
            self._refuse(reason, detail)
            code = STATUS_OF_REASON.get(reason, grpc.StatusCode.INVALID_ARGUMENT)
            await context.abort(code, f"{reason}: {detail}")
        ack = pb.ReportAck(heartbeat_interval_seconds=self.heartbeat_interval)
        ack.collector_time.GetCurrentTime()
        if self.plan_for is not None:
            ack.plan.CopyFrom(self.plan_for(node))
        return ack

    def _store(
        self, raw: bytes, now: float, identity: Identity
    ) -> tuple[str, tuple[str, str] | None]:
        """Parses, validates and stores one report: (node name, None), or (_, (reason, detail)).

        Returns plain strings rather than raising past this frame: an exception kept
        alive (logged, chained, in a traceback cycle) would keep the report and its bytes
        with it until a garbage collection, which a flood of big reports outruns.
        """
        try:
            if len(raw) > self.state.limits.max_message_bytes:
                raise Rejected(
                    "message_too_large",
                    f"{len(raw)} bytes, limit {self.state.limits.max_message_bytes}",
                )
            try:
                report = pb.NodeReport.FromString(raw)
            except DecodeError as error:
                raise Rejected("malformed", f"not a NodeReport: {error}") from None
            if not identity.may_report(report.node_name):
                raise Rejected(
                    "identity_mismatch",
                    f"{identity.principal} runs on {identity.node}, not on the node it names",
                )
            if not self.rate_limiter.allow(report.node_name, now):
                raise Rejected("rate_limited", "reports arrive faster than the limit allows")
            try:
                # An identity bound to a node (auth.mode kubernetes: the pod's spec.nodeName,
                # read from the API) names a Kubernetes node already, even one the node
                # list has not caught up with; only unbound callers are checked against it.
                known = None if identity.node != ANY_NODE else self.known_nodes()
                self.state.accept(report, now, known, size=len(raw))
            except Rejected:
                raise
            except Exception as error:
                # A bug of ours on this input: the report is refused and counted like any
                # other, with the traceback logged, and ingest goes on.
                log.exception("report from %r could not be validated", report.node_name[:64])
                raise Rejected("malformed", f"unusable report ({type(error).__name__})") from None
        except Rejected as rejection:
            return "", (rejection.reason, rejection.detail)
        return report.node_name, None

    def _refuse(self, reason: str, detail: str) -> None:
        self.state.count_rejection(reason)
        self._log_throttled("rejected", reason, detail)

    def _log_throttled(self, verb: str, reason: str, detail: str) -> None:
        # A hostile client can send thousands a second: log each reason at most once per
        # interval (the counter has them all).
        now = time.monotonic()
        if now - self._logged.get(reason, -LOG_EVERY_SECONDS) >= LOG_EVERY_SECONDS:
            self._logged[reason] = now
            log.warning("%s report: %s: %s", verb, reason, detail[:500])

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "Report": grpc.stream_unary_rpc_method_handler(
                    self.report_stream,
                    request_deserializer=None,
                    response_serializer=pb.ReportAck.SerializeToString,
                )
            },
        )


async def start_grpc_server(
    servicer: ReportServicer,
    address: str,
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Starts the server (TLS with `credentials`); returns it and the port bound (for `:0`)."""
    ceiling = servicer.state.limits.max_message_bytes * GRPC_CEILING_FACTOR
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", ceiling)])
    server.add_generic_rpc_handlers((servicer.handler(),))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = (
        server.add_insecure_port(address)
        if credentials is None
        else server.add_secure_port(address, credentials)
    )
    if port == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port
