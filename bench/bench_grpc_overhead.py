"""Benchmark: what one gRPC call costs the server before any Preflight code runs.

The floor under "accepted reports per collector CPU-second" (bench_ingest): a server
whose handler does nothing with a report-sized request (3,000 bytes) and answers a
20-byte ack, measured as the server process's user+system CPU time from /proc over
`--seconds` of calls from a separate client process (grpc.aio, 8 channels, `--inflight`
calls in flight). Side by side in one run, the server shapes Preflight could use:

- `aio-stream`: grpc.aio with a stream-unary handler, what collector/ingest.py ran
  before 2026-12-02 (request-streaming: a report over gRPC's receive ceiling is counted);
- `aio-unary`: grpc.aio with a unary handler;
- `sync-N`: the synchronous grpc server, a unary handler on a pool of N threads;
- `sync-stream-N`: the synchronous server, a stream-unary handler on N threads (what
  the collector runs since 2026-12-02: an oversize report still reaches it, empty);
- `sync-first-N`: the same, reading only the first message (not waiting for the end of
  the request stream);
- `sync-registered-N`: `sync-first-N` registered by method name
  (`add_registered_method_handlers`, what the collector runs since 2026-12-02 afternoon)
  instead of as a generic handler asked per call.

The client sends unary calls whatever the server's shape (the wire is the same, and it
is what agents send); `--client matching` sends request-streaming calls to the stream
shapes instead (how this bench drove `aio-stream` before 2026-12-02).

Loopback only, bounded, stops by itself. Not part of `make test`.
Run: .venv/bin/python bench/bench_grpc_overhead.py [--seconds 8] [--inflight 32]
     [--shapes aio-stream,aio-unary,sync-4,sync-stream-4] [--client unary|matching]
     [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

PAYLOAD = os.urandom(3000)
ACK = b"\x08\x1e" * 10
METHOD = "/bench.Overhead/Report"


def _same(data: bytes) -> bytes:
    return data


def _handler(shape: str) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler("bench.Overhead", {"Report": _method(shape)})


def _method(shape: str) -> grpc.RpcMethodHandler:
    if shape == "aio-stream":

        async def stream(requests: AsyncIterator[bytes], _context: Any) -> bytes:
            async for _ in requests:
                pass
            return ACK

        handler = grpc.stream_unary_rpc_method_handler(stream, _same, _same)
    elif shape == "aio-unary":

        async def unary(_request: bytes, _context: Any) -> bytes:
            return ACK

        handler = grpc.unary_unary_rpc_method_handler(unary, _same, _same)
    elif shape.startswith(("sync-first-", "sync-registered-")):

        def sync_first(requests: Iterator[bytes], _context: Any) -> bytes:
            next(requests, None)  # the one message only: no wait for the end of the stream
            return ACK

        handler = grpc.stream_unary_rpc_method_handler(sync_first, _same, _same)
    elif shape.startswith("sync-stream-"):

        def sync_stream(requests: Iterator[bytes], _context: Any) -> bytes:
            for _ in requests:
                pass
            return ACK

        handler = grpc.stream_unary_rpc_method_handler(sync_stream, _same, _same)
    else:

        def sync_unary(_request: bytes, _context: Any) -> bytes:
            return ACK

        handler = grpc.unary_unary_rpc_method_handler(sync_unary, _same, _same)
    return handler


def serve(shape: str) -> None:
    """Runs the server of `shape` on a free loopback port; prints the port, then serves."""
    if shape.startswith("aio"):

        async def main() -> None:
            server = grpc.aio.server()
            server.add_generic_rpc_handlers((_handler(shape),))
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            print(port, flush=True)
            await server.wait_for_termination()

        asyncio.run(main())
        return
    workers = int(shape.rsplit("-", 1)[1])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    if shape.startswith("sync-registered-"):
        # What collector/ingest.py registers since 2026-12-02 (afternoon): found by name.
        server.add_registered_method_handlers("bench.Overhead", {"Report": _method(shape)})
    else:
        server.add_generic_rpc_handlers((_handler(shape),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


async def drive(port: int, seconds: float, inflight: int, streaming: bool) -> int:
    """Calls completed in `seconds` with `inflight` calls outstanding."""
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(8)]
    done = 0
    end = time.monotonic() + seconds

    def one() -> Iterator[bytes]:
        yield PAYLOAD

    async def worker(i: int) -> None:
        nonlocal done
        channel = channels[i % len(channels)]
        if streaming:
            stream_call = channel.stream_unary(METHOD, _same, _same)
            while time.monotonic() < end:
                await stream_call(one())
                done += 1
        else:
            unary_call = channel.unary_unary(METHOD, _same, _same)
            while time.monotonic() < end:
                await unary_call(PAYLOAD)
                done += 1

    await asyncio.gather(*(worker(i) for i in range(inflight)))
    for channel in channels:
        await channel.close()
    return done


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(shape: str, seconds: float, inflight: int, client: str) -> tuple[int, float]:
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", shape], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        streaming = client == "matching" and "stream" in shape
        asyncio.run(drive(port, 1.0, 8, streaming))  # connections up, code paths warm
        before = cpu_seconds(server.pid)
        calls = asyncio.run(drive(port, seconds, inflight, streaming))
        return calls, cpu_seconds(server.pid) - before
    finally:
        server.kill()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--inflight", type=int, default=32)
    parser.add_argument(
        "--shapes", default="aio-stream,aio-unary,sync-2,sync-4,sync-8,sync-stream-4"
    )
    parser.add_argument("--client", choices=("unary", "matching"), default="unary")
    parser.add_argument("--rounds", type=int, default=1, help="shapes in turn, this many times")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    shapes = args.shapes.split(",")
    if args.rounds == 1:
        print(
            f"| server shape | calls in {args.seconds:g} s | server CPU | per call "
            "| calls per CPU-s |"
        )
        print("|---|---|---|---|---|")
        for shape in shapes:
            calls, cpu = measure(shape, args.seconds, args.inflight, args.client)
            print(
                f"| {shape} | {calls:,} | {cpu:.2f} s | {1e6 * cpu / calls:.0f} µs | "
                f"{calls / cpu:,.0f} |",
                flush=True,
            )
        return
    # Round robin: on a shared machine the load drifts within a run; each shape then
    # sees the same drift, and the median of its rounds is the figure.
    per_call: dict[str, list[float]] = {shape: [] for shape in shapes}
    for _ in range(args.rounds):
        for shape in shapes:
            calls, cpu = measure(shape, args.seconds, args.inflight, args.client)
            per_call[shape].append(1e6 * cpu / calls)
    print(f"| server shape | per call, median of {args.rounds} (min-max) | calls per CPU-s |")
    print("|---|---|---|")
    for shape, values in per_call.items():
        middle = statistics.median(values)
        print(
            f"| {shape} | {middle:.0f} µs ({min(values):.0f}-{max(values):.0f}) "
            f"| {1e6 / middle:,.0f} |"
        )


if __name__ == "__main__":
    main()
