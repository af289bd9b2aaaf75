"""Reports sent to a running collector over real gRPC (loopback), for the collector tests."""

from __future__ import annotations

import grpc.aio

from collector.service import CollectorService
from preflight.v1 import report_pb2 as pb
from preflight.v1 import report_pb2_grpc as pb_grpc


def report(
    name: str = "node-a", sequence: int = 1, instance: str = "i1", **kw: object
) -> pb.NodeReport:
    """A minimal report of `name`, sent now."""
    message = pb.NodeReport(node_name=name, instance_id=instance, sequence=sequence, **kw)  # type: ignore[arg-type]
    message.sent_at.GetCurrentTime()
    return message


async def send(service: CollectorService, message: pb.NodeReport) -> pb.ReportAck:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        return await pb_grpc.CollectorStub(channel).Report(message, timeout=5)


async def send_raw(service: CollectorService, payload: bytes) -> None:
    """Any bytes as a Report message (the collector must refuse what is not a report)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        call = channel.unary_unary(
            "/preflight.v1.Collector/Report",
            request_serializer=lambda b: b,
            response_deserializer=pb.ReportAck.FromString,
        )
        await call(payload, timeout=5)
