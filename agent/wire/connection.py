"""One HTTP/2 connection to a gRPC server (h2 state machine on an asyncio transport).

Streams are unary calls: request headers, one length-prefixed message, then the response
headers, data and trailers. Sending respects the peer's flow-control windows (waiting
for WINDOW_UPDATE); received data is acknowledged as it is consumed, so h2 sends our
WINDOW_UPDATEs. h2 answers PINGs and SETTINGS itself. A GOAWAY stops new streams here
and fails those the server did not take (retryable, UNAVAILABLE); a lost transport
fails every open stream the same way. The channel (agent.wire.channel) then dials anew.

GOAWAY frames are taken out of the byte stream before h2 sees them: h2 moves the whole
connection to CLOSED on one and then refuses the frames of the streams the server is
still finishing (python-hyper/h2#1181), where RFC 9113 §6.8 (and grpcio's graceful
stop) lets them complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from agent.wire.framing import (
    DEFAULT_MAX_MESSAGE_BYTES,
    H2_ERROR,
    MessageReader,
    header_map,
    status_of_response_headers,
    status_of_trailers,
)
from agent.wire.status import RpcError, StatusCode

log = logging.getLogger(__name__)

FRAME_HEADER = 9  # RFC 9113 §4.1: length (3), type (1), flags (1), stream id (4)
GOAWAY = 0x7


class _Stream:
    def __init__(self, max_message_bytes: int) -> None:
        self.reader = MessageReader(max_message_bytes)
        self.headers: dict[bytes, bytes] | None = None
        self.trailers: dict[bytes, bytes] = {}
        self.error: RpcError | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.window = asyncio.Event()

    def finish(self, error: RpcError | None = None) -> None:
        if self.done.done():
            return
        if error is not None and self.error is None:
            self.error = error
        self.done.set_result(None)
        self.window.set()  # a sender waiting for window must look again

    def result(self) -> bytes:
        if self.error is not None:
            raise self.error
        if self.headers is None:
            raise RpcError(StatusCode.INTERNAL, "stream ended without response headers")
        error = status_of_trailers(self.trailers)
        if error is not None:
            raise error
        if self.reader.partial or len(self.reader.messages) != 1:
            raise RpcError(
                StatusCode.INTERNAL,
                f"unary response carried {len(self.reader.messages)} messages"
                + (" and a partial one" if self.reader.partial else ""),
            )
        return self.reader.messages[0]


class Connection(asyncio.Protocol):
    """asyncio protocol speaking HTTP/2 as a client; `call` runs one unary stream."""

    def __init__(self, peer: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.peer = peer
        self.max_message_bytes = max_message_bytes
        self._h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self._transport: asyncio.Transport | None = None
        self._streams: dict[int, _Stream] = {}
        self._inbound = bytearray()  # a partial frame, waiting for the rest
        self.closed = False
        self.goaway = False
        # When the peer last sent anything: a call that times out on a connection that
        # has said nothing since the call began is on a dead connection (no RST came).
        self.last_received = 0.0  # never

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._h2.initiate_connection()
        # No server push: a unary client has nowhere to put it.
        self._h2.update_settings({h2.settings.SettingCodes.ENABLE_PUSH: 0})
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.last_received = time.monotonic()
        self._inbound += data
        passed = bytearray()
        while len(self._inbound) >= FRAME_HEADER:
            length = int.from_bytes(self._inbound[:3], "big")
            if length > self._h2.max_inbound_frame_size:
                break  # h2 sees it below and raises FRAME_SIZE_ERROR
            end = FRAME_HEADER + length
            if len(self._inbound) < end:
                break
            frame = bytes(self._inbound[:end])
            del self._inbound[:end]
            if frame[3] == GOAWAY and length >= 8:
                if not self._feed(bytes(passed)):
                    return
                passed.clear()
                last = int.from_bytes(frame[9:13], "big") & 0x7FFFFFFF
                self._goaway(last, int.from_bytes(frame[13:17], "big"))
            else:
                passed += frame
        if self._inbound and len(self._inbound) >= FRAME_HEADER:
            length = int.from_bytes(self._inbound[:3], "big")
            if length > self._h2.max_inbound_frame_size:
                passed += self._inbound
                self._inbound.clear()
        self._feed(bytes(passed))
        self._flush()

    def _feed(self, data: bytes) -> bool:
        """Whole frames into h2 and their events handled; False when the connection died."""
        if not data or self.closed:
            return not self.closed
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as error:
            log.warning("HTTP/2 protocol error from %s: %s", self.peer, error)
            self._fail_all(RpcError(StatusCode.INTERNAL, f"HTTP/2 protocol error: {error}"))
            self._flush()
            self._abort()
            return False
        for event in events:
            self._handle(event)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        why = f": {exc}" if exc is not None else ""
        self._fail_all(RpcError(StatusCode.UNAVAILABLE, f"connection to {self.peer} lost{why}"))

    # -- events ------------------------------------------------------------------------

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            stream = self._streams.get(event.stream_id or 0)
            if stream is not None:
                stream.headers = header_map(event.headers or ())
                error = status_of_response_headers(stream.headers)
                if error is not None:
                    stream.error = error
        elif isinstance(event, h2.events.DataReceived):
            sid = event.stream_id or 0
            # Consumed at once (buffered in the stream): give the window back.
            self._h2.acknowledge_received_data(event.flow_controlled_length or 0, sid)
            stream = self._streams.get(sid)
            if stream is not None and stream.error is None:
                try:
                    stream.reader.feed(event.data or b"")
                except RpcError as error:
                    self._reset(sid, h2.errors.ErrorCodes.CANCEL)
                    stream.finish(error)
        elif isinstance(event, h2.events.TrailersReceived):
            stream = self._streams.get(event.stream_id or 0)
            if stream is not None:
                stream.trailers = header_map(event.headers or ())
        elif isinstance(event, h2.events.StreamEnded):
            stream = self._streams.pop(event.stream_id or 0, None)
            if stream is not None:
                stream.finish()
            if self.goaway and not self._streams:
                self.close()  # drained after GOAWAY
        elif isinstance(event, h2.events.StreamReset):
            stream = self._streams.pop(event.stream_id or 0, None)
            if stream is not None:
                code = int(event.error_code or 0)
                stream.finish(
                    RpcError(
                        H2_ERROR.get(code, StatusCode.INTERNAL),
                        f"stream reset by {self.peer} (HTTP/2 error code {code})",
                    )
                )
        elif isinstance(event, h2.events.ConnectionTerminated):  # only if one slipped past
            self._goaway(int(event.last_stream_id or 0), int(event.error_code or 0))
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            for stream in self._streams.values():
                stream.window.set()

    def _goaway(self, last_stream_id: int, error_code: int) -> None:
        self.goaway = True
        for sid in [s for s in self._streams if s > last_stream_id]:
            # Never processed by the server: retrying elsewhere is safe.
            self._streams.pop(sid).finish(
                RpcError(StatusCode.UNAVAILABLE, f"{self.peer} is going away (GOAWAY)")
            )
        if error_code:
            why = f"{self.peer} closed the connection (GOAWAY, HTTP/2 error code {error_code})"
            self._fail_all(RpcError(StatusCode.UNAVAILABLE, why))
        if not self._streams:
            self.close()

    # -- the call ----------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return not self.closed and not self.goaway and self._transport is not None

    async def call(self, headers: list[tuple[str, str]], body: bytes) -> bytes:
        """One unary stream; RpcError for anything but OK with exactly one message."""
        if not self.usable:
            raise RpcError(StatusCode.UNAVAILABLE, f"connection to {self.peer} is closed")
        stream = _Stream(self.max_message_bytes)
        try:
            sid = self._h2.get_next_available_stream_id()
        except h2.exceptions.NoAvailableStreamIDError:
            self.goaway = True  # exhausted: the channel opens another connection
            raise RpcError(StatusCode.UNAVAILABLE, "no stream ids left") from None
        self._streams[sid] = stream
        try:
            self._h2.send_headers(sid, headers)
            self._flush()
            await self._send_body(sid, stream, body)
            await stream.done
        except h2.exceptions.ProtocolError as error:
            # h2 refused to send (the stream or connection closed under us): a failed
            # call, never an exception the caller does not expect.
            self._streams.pop(sid, None)
            raise RpcError(StatusCode.UNAVAILABLE, f"HTTP/2 stream failed: {error!r}") from None
        except BaseException:
            # Cancelled (the deadline) or failed: tell the server we gave up on it.
            if self._streams.pop(sid, None) is not None and not self.closed:
                self._reset(sid, h2.errors.ErrorCodes.CANCEL)
                self._flush()
            raise
        return stream.result()

    async def _send_body(self, sid: int, stream: _Stream, body: bytes) -> None:
        view = memoryview(body)
        sent = 0
        while sent < len(body):
            if stream.done.done():
                return  # the server answered (an error) before taking the whole request
            allowed = min(
                self._h2.local_flow_control_window(sid),
                self._h2.max_outbound_frame_size,
                len(body) - sent,
            )
            if allowed <= 0:
                stream.window.clear()
                await stream.window.wait()
                continue
            self._h2.send_data(sid, bytes(view[sent : sent + allowed]))
            sent += allowed
            self._flush()
        if not stream.done.done():
            self._h2.end_stream(sid)
            self._flush()

    # -- plumbing ----------------------------------------------------------------------

    def _reset(self, sid: int, code: h2.errors.ErrorCodes) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.reset_stream(sid, code)

    def _fail_all(self, error: RpcError) -> None:
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream.finish(error)

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _abort(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        """GOAWAY to the server, then the socket; open streams fail UNAVAILABLE."""
        if self._transport is None or self._transport.is_closing():
            self.closed = True
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.close_connection()
        self._flush()
        self.closed = True
        self._transport.close()
