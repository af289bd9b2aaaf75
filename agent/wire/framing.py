"""gRPC over HTTP/2 framing: length-prefixed messages, request headers, status from headers.

Everything here is pure (bytes in, values out), following grpc/grpc
doc/PROTOCOL-HTTP2.md: a message is a 1-byte compressed flag, a 4-byte big-endian
length and the bytes; the status travels in trailers (`grpc-status`, `grpc-message`
percent-encoded), or in the headers of a trailers-only response; an HTTP status other
than 200 maps to a gRPC code by the spec's table.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from urllib.parse import unquote_to_bytes

from agent.wire.status import RpcError, StatusCode

PREFIX = struct.Struct(">BI")
# As grpcio's default for received messages.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

# PROTOCOL-HTTP2.md, "HTTP to gRPC Status Code Mapping".
HTTP_STATUS = {
    400: StatusCode.INTERNAL,
    401: StatusCode.UNAUTHENTICATED,
    403: StatusCode.PERMISSION_DENIED,
    404: StatusCode.UNIMPLEMENTED,
    429: StatusCode.UNAVAILABLE,
    502: StatusCode.UNAVAILABLE,
    503: StatusCode.UNAVAILABLE,
    504: StatusCode.UNAVAILABLE,
}

# PROTOCOL-HTTP2.md, "Errors": RST_STREAM / GOAWAY error codes as gRPC codes.
H2_ERROR = {
    0x7: StatusCode.UNAVAILABLE,  # REFUSED_STREAM: not processed, safe to retry
    0x8: StatusCode.CANCELLED,  # CANCEL
    0xB: StatusCode.RESOURCE_EXHAUSTED,  # ENHANCE_YOUR_CALM
    0xC: StatusCode.PERMISSION_DENIED,  # INADEQUATE_SECURITY
}


def encode_message(payload: bytes) -> bytes:
    """One uncompressed length-prefixed message."""
    return PREFIX.pack(0, len(payload)) + payload


class MessageReader:
    """Collects DATA bytes and yields whole messages; refuses one over `max_bytes`."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self.messages: list[bytes] = []

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= PREFIX.size:
            compressed, length = PREFIX.unpack_from(self._buffer)
            if length > self.max_bytes:
                raise RpcError(
                    StatusCode.RESOURCE_EXHAUSTED,
                    f"received message larger than max ({length} vs. {self.max_bytes})",
                )
            if compressed:
                # We never send grpc-accept-encoding, so a server may not compress.
                raise RpcError(StatusCode.INTERNAL, "compressed message without an encoding")
            if len(self._buffer) < PREFIX.size + length:
                return
            self.messages.append(bytes(self._buffer[PREFIX.size : PREFIX.size + length]))
            del self._buffer[: PREFIX.size + length]

    @property
    def partial(self) -> bool:
        return bool(self._buffer)


def grpc_timeout(seconds: float) -> str:
    """The `grpc-timeout` header: at most 8 digits, the finest unit that fits."""
    for unit, scale in (("u", 1e6), ("m", 1e3), ("S", 1.0), ("M", 1 / 60), ("H", 1 / 3600)):
        value = math.ceil(max(seconds, 0.0) * scale)
        if value < 100_000_000:
            return f"{max(value, 1)}{unit}"
    return "99999999H"


def request_headers(
    *,
    path: str,
    authority: str,
    scheme: str,
    timeout: float | None,
    metadata: Iterable[tuple[str, str]] = (),
    user_agent: str = "preflight-agent (h2)",
) -> list[tuple[str, str]]:
    headers = [
        (":method", "POST"),
        (":scheme", scheme),
        (":path", path),
        (":authority", authority),
        ("te", "trailers"),
        ("content-type", "application/grpc"),
        ("user-agent", user_agent),
    ]
    if timeout is not None:
        headers.append(("grpc-timeout", grpc_timeout(timeout)))
    for key, value in metadata:
        # Metadata keys are lower case on the wire; reserved ones are not the caller's.
        key = key.lower()
        if key.startswith(":") or key in {"te", "content-type", "grpc-timeout"}:
            raise ValueError(f"reserved metadata key {key!r}")
        headers.append((key, value))
    return headers


def decode_message(value: bytes) -> str:
    """`grpc-message` is percent-encoded UTF-8; undecodable bytes are replaced, not fatal."""
    return unquote_to_bytes(value).decode("utf-8", "replace")


def header_map(headers: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    return {bytes(k).lower(): bytes(v) for k, v in headers}


def status_of_response_headers(headers: dict[bytes, bytes]) -> RpcError | None:
    """The error a response's first HEADERS already says, or None when data may follow."""
    http = headers.get(b":status", b"")
    if http != b"200":
        code = HTTP_STATUS.get(int(http), StatusCode.UNKNOWN) if http.isdigit() else None
        shown = http.decode("ascii", "replace")
        return RpcError(code or StatusCode.INTERNAL, f"HTTP status {shown}")
    if b"grpc-status" in headers:  # trailers-only response
        return status_of_trailers(headers)
    content_type = headers.get(b"content-type", b"")
    if not content_type.startswith(b"application/grpc"):
        return RpcError(
            StatusCode.UNKNOWN,
            f"content-type {content_type.decode('ascii', 'replace')!r} is not gRPC",
        )
    return None


def status_of_trailers(trailers: dict[bytes, bytes]) -> RpcError | None:
    """None for OK, else the error the trailers carry."""
    raw = trailers.get(b"grpc-status")
    if raw is None or not raw.isdigit():
        return RpcError(StatusCode.UNKNOWN, "response ended without a grpc-status")
    code = StatusCode.of(int(raw))
    if code == StatusCode.OK:
        return None
    return RpcError(code, decode_message(trailers.get(b"grpc-message", b"")))
