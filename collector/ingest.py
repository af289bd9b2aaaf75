"""The gRPC side of the collector: the Report servicer and the standard health service.

Report is registered with a raw-bytes handler so that a malformed or oversized
message is rejected with a reason and counted, instead of dying inside gRPC's
deserializer where nobody sees it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from collector.auth import Authenticator, AuthFailure, NoAuth
from collector.ratelimit import RateLimiter
from collector.state import ClusterState, Rejected
from preflight.v1 import report_pb2 as pb

log = logging.getLogger(__name__)

SERVICE_NAME = "preflight.v1.Collector"
# gRPC's own ceiling sits above the configured limit so oversize reports reach
# our handler, get a reason and are counted; beyond it gRPC refuses by itself.
GRPC_CEILING_FACTOR = 4


# The answer to each refusal: a retry cannot help INVALID_ARGUMENT; the others may
# succeed later (a rotated token, a slower pace), so the agent backs off and retries.
STATUS_OF_REASON = {
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "identity_mismatch": grpc.StatusCode.PERMISSION_DENIED,
    "rate_limited": grpc.StatusCode.RESOURCE_EXHAUSTED,
}


class ReportServicer:
    def __init__(
        self,
        state: ClusterState,
        heartbeat_interval: float,
        plan_for: Callable[[str], pb.ProbePlan] | None = None,
        authenticator: Authenticator | None = None,
    ) -> None:
        self.state = state
        self.heartbeat_interval = heartbeat_interval
        # The node's probe plan, sent in every ack (collector.plan.PlanBook.for_node).
        self.plan_for = plan_for
        self.authenticator: Authenticator = authenticator or NoAuth()
        limits = state.limits
        self.rate_limiter = RateLimiter(limits.min_report_interval, limits.report_burst)

    async def report(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> pb.ReportAck:
        try:
            # Who is asking comes first: nothing of an unauthenticated report is read.
            identity = await self.authenticator.authenticate(context.invocation_metadata())
        except AuthFailure as failure:
            if failure.reason is not None:
                self.state.count_rejection(failure.reason)
            log.warning("refused report: %s", failure.detail)
            await context.abort(failure.code, failure.detail)
        now = time.time()
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
            self.state.accept(report, now)
        except Rejected as rejection:
            self.state.count_rejection(rejection.reason)
            log.warning("rejected report: %s", rejection)
            code = STATUS_OF_REASON.get(rejection.reason, grpc.StatusCode.INVALID_ARGUMENT)
            await context.abort(code, str(rejection))
        ack = pb.ReportAck(heartbeat_interval_seconds=self.heartbeat_interval)
        ack.collector_time.GetCurrentTime()
        if self.plan_for is not None:
            ack.plan.CopyFrom(self.plan_for(report.node_name))
        return ack

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "Report": grpc.unary_unary_rpc_method_handler(
                    self.report,
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
