"""The agent's gRPC client: unary calls over HTTP/2 (h2) on asyncio streams, no grpcio.

grpcio costs the agent about 24 MiB of resident memory for one unary call every few
seconds (docs/performance.md, "Agent footprint"); this package speaks the small part of
gRPC over HTTP/2 (grpc/grpc doc/PROTOCOL-HTTP2.md) the agent needs: one modules per job
-- status (the codes and the error), framing (length-prefixed messages, headers,
trailers), connection (one HTTP/2 connection, its streams and flow control) and channel
(an address, its TLS, connection reuse and reconnection, the call). It never uses a
proxy: no proxy variable is read anywhere here, so the egress proxy being probed never
carries collector traffic.
"""

from agent.wire.channel import Channel, parse_target
from agent.wire.status import RpcError, StatusCode

__all__ = ["Channel", "RpcError", "StatusCode", "parse_target"]
