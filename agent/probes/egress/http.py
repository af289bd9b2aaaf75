"""Phases `request` and `transfer`: an HTTP/1.1 GET (h11) and its body.

`request` lasts up to the parsed response head (`time_to_first_byte`); `transfer` reads
the body (at most 1 MiB). An origin status outside `expect_status` (or a status listed
in `require_header_for` without that header) → `http_unexpected_status`; so is a
server that closes the connection or speaks something other than HTTP/1.1 instead of
answering (status 0).
"""

from __future__ import annotations

import asyncio
import ssl
import time

import h11

from agent.config import EgressTarget
from agent.probes.egress.state import READ_SIZE, USER_AGENT, Failure, ProbeState, fail
from agent.probes.results import EgressResult

MAX_BODY_BYTES = 1 << 20


def _host_header(host: str, port: int) -> str:
    name = f"[{host}]" if ":" in host else host
    return name if port == 443 else f"{name}:{port}"


async def fetch(
    state: ProbeState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    target, result = state.target, state.result
    conn = h11.Connection(our_role=h11.CLIENT)
    request = h11.Request(
        method="GET",
        target=target.path,
        headers=[
            ("Host", _host_header(target.host, target.port)),
            ("User-Agent", USER_AGENT),
            ("Accept", "*/*"),
            ("Connection", "close"),
        ],
    )
    state.start("request")
    sent_at = time.perf_counter()
    response: h11.Response | None = None
    body_bytes = 0
    try:
        writer.write((conn.send(request) or b"") + (conn.send(h11.EndOfMessage()) or b""))
        await writer.drain()
        first_byte = True
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(READ_SIZE)
                if first_byte and data:
                    result.time_to_first_byte_seconds = time.perf_counter() - sent_at
                    first_byte = False
                conn.receive_data(data)
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                response = event
                result.http_status = event.status_code
                state.stop()
                state.start("transfer")
                continue
            if isinstance(event, h11.Data):
                body_bytes += len(event.data)
                if body_bytes >= MAX_BODY_BYTES:
                    break
                continue
            break  # EndOfMessage, ConnectionClosed or PAUSED
    except h11.RemoteProtocolError as error:
        if response is None:
            raise Failure(
                "http_unexpected_status",
                "request",
                f"{target.host} did not answer with HTTP/1.1: {error}",
            ) from None
        # A truncated body after a valid status: the origin answered, which is what counts.
    except (OSError, ssl.SSLError) as error:
        if response is None:
            raise Failure(
                "http_unexpected_status",
                "request",
                f"{target.host} dropped the connection before answering: {error}",
            ) from None
    state.stop()
    if response is None:
        raise Failure(
            "http_unexpected_status",
            "request",
            f"{target.host} closed the connection without an HTTP response",
        )
    _judge_status(target, result, response)


def _judge_status(target: EgressTarget, result: EgressResult, response: h11.Response) -> None:
    status = response.status_code
    if target.expect_status and status not in target.expect_status:
        expected = ", ".join(str(s) for s in target.expect_status)
        fail(
            result,
            "http_unexpected_status",
            "request",
            f"{target.host} answered {status}; expected {expected}",
        )
        return
    required = target.require_header_for.get(status)
    if required is not None:
        names = {name.decode("latin-1").lower() for name, _ in response.headers}
        if required.lower() not in names:
            fail(
                result,
                "http_unexpected_status",
                "request",
                f"{target.host} answered {status} without a {required} header",
            )
            return
    result.up = True
    result.reason = None
    result.failed_phase = None
    result.message = ""
