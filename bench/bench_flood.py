"""Benchmark: what a flood costs a collector with default limits, and scrapes at scale.

Three parts, each against a real `preflight-collector` process on loopback (default
limits, standalone), measured from outside: RSS from /proc/PID/status (VmRSS now,
VmHWM peak), `/metrics` bytes and time from a real GET.

1. Flood. 1,000 realistic nodes report (the "before" figures), then a client sends
   100,000 reports under distinct made-up names, then 2,000 reports whose 64 target
   names are 60 KB each (just under 4 MiB, the message limit) and 2,000 with 60 KB of
   free text per target; "after" figures, and the answers the flood got.
2. Scrapers. 1,000 realistic nodes, 200 clients scraping /metrics back to back for a
   while; meanwhile /healthz is probed every 50 ms: p50/p99/max, and the peak RSS.
3. agent_coverage at 1k/2k/4k/8k stale nodes (in process): the rule's time, which
   the issue measured as quadratic (0.007/0.027/0.148/0.639 s).

Not part of `make test`; prints a Markdown table per part.
Run from the repository root:
  .venv/bin/python -m bench.bench_flood [--names 100000] [--scrapers 200] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import grpc.aio

from bench.bench_exposition import make_report
from collector.config import LimitsConfig
from collector.rules import agent_coverage
from collector.rules.model import Evidence
from collector.state import AgentReports, NodeEntry
from preflight.profile import load_profile
from preflight.v1 import report_pb2 as pb
from tests.support.procs import CollectorProcess

MIB = 1024 * 1024


async def send_all(port: int, payloads: Any, concurrency: int = 32) -> dict[str, int]:
    answers: dict[str, int] = {}
    options = [("grpc.max_send_message_length", 64 * MIB)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        call = channel.unary_unary("/preflight.v1.Collector/Report")
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=concurrency * 2)

        async def worker() -> None:
            while (payload := await queue.get()) is not None:
                try:
                    await call(payload, timeout=30)
                    code = "OK"
                except grpc.aio.AioRpcError as error:
                    details = error.details() or ""
                    code = details.split(":", 1)[0] if ":" in details else error.code().name
                answers[code] = answers.get(code, 0) + 1

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        for payload in payloads:
            await queue.put(payload)
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    return answers


async def scrape(url: str) -> tuple[int, float]:
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        async with session.get(url) as response:
            body = await response.read()
        return len(body), time.perf_counter() - started


async def metrics_figures(collector: CollectorProcess) -> dict[str, float]:
    sizes, times = [], []
    for _ in range(3):
        size, took = await scrape(f"{collector.http}/metrics")
        sizes.append(size)
        times.append(took)
    rss, hwm = collector.memory()
    return {"rss": rss, "hwm": hwm, "bytes": sizes[-1], "render": statistics.median(times)}


def realistic(n: int) -> list[bytes]:
    rng = random.Random(1)
    return [make_report(i, 1, rng).SerializeToString() for i in range(n)]


def made_up(count: int) -> Any:
    for i in range(count):
        message = pb.NodeReport(node_name=f"flood-{i:06d}", sequence=1, agent_version="0.1.0")
        message.sent_at.GetCurrentTime()
        message.egress.add(target="gcr.io/run-ai-prod", outcome=pb.OUTCOME_UP)
        yield message.SerializeToString()


def oversized_labels(count: int, free_text: bool) -> Any:
    for i in range(count):
        message = pb.NodeReport(node_name=f"big-{'text' if free_text else 'label'}-{i}")
        message.sent_at.GetCurrentTime()
        for t in range(64):
            if free_text:
                message.egress.add(target=f"t{t}", outcome=pb.OUTCOME_DOWN, message="m" * 60_000)
            else:
                message.egress.add(target=f"{t:02d}" + "x" * 60_000, outcome=pb.OUTCOME_UP)
        yield message.SerializeToString()


async def part_flood(tmp: Path, names: int, big: int) -> None:
    collector = CollectorProcess(tmp, log_level="ERROR")
    try:
        real = await send_all(collector.grpc_port, realistic(1000))
        before = await metrics_figures(collector)
        started = time.perf_counter()
        flood = await send_all(collector.grpc_port, made_up(names))
        flood_seconds = time.perf_counter() - started
        labels = await send_all(collector.grpc_port, oversized_labels(big, False), 8)
        text = await send_all(collector.grpc_port, oversized_labels(big, True), 8)
        after = await metrics_figures(collector)
    finally:
        collector.close()
    print(f"\n### Flood ({names:,} made-up names, {big:,} + {big:,} oversized reports)\n")
    print(f"1,000 realistic nodes: {real}")
    print(f"{names:,} made-up names in {flood_seconds:.1f} s: {flood}")
    print(f"{big:,} reports with 64 x 60 KB target names: {labels}")
    print(f"{big:,} reports with 64 x 60 KB messages: {text}\n")
    print("|  | RSS | peak RSS | /metrics bytes | /metrics time (median of 3) |")
    print("| --- | --- | --- | --- | --- |")
    for what, f in (("before the flood", before), ("after the flood", after)):
        print(
            f"| {what} | {f['rss']:.0f} MiB | {f['hwm']:.0f} MiB | {f['bytes'] / MIB:.1f} MiB "
            f"| {f['render'] * 1000:.0f} ms |"
        )


async def part_scrapers(tmp: Path, scrapers: int, seconds: float) -> None:
    collector = CollectorProcess(tmp, log_level="ERROR")
    try:
        await send_all(collector.grpc_port, realistic(1000))
        rss_before, _ = collector.memory()
        stop = asyncio.Event()
        scrapes = 0
        peak = 0.0

        async def scraper(session: aiohttp.ClientSession) -> None:
            nonlocal scrapes
            while not stop.is_set():
                async with session.get(f"{collector.http}/metrics") as response:
                    await response.read()
                scrapes += 1

        # The prober is its own process: in the scrapers' event loop its latency would be
        # that loop's lag, not the collector's.
        probe = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.bench_flood",
            "--probe",
            f"{collector.http}/healthz",
            "--seconds",
            str(seconds),
            stdout=asyncio.subprocess.PIPE,
        )

        async def sample_memory() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, collector.memory()[0])
                await asyncio.sleep(0.05)

        connector = aiohttp.TCPConnector(limit=scrapers + 10)
        async with aiohttp.ClientSession(connector=connector) as session:
            tasks = [asyncio.create_task(scraper(session)) for _ in range(scrapers)]
            memory = asyncio.create_task(sample_memory())
            out, _ = await probe.communicate()
            stop.set()
            await asyncio.gather(*tasks, memory)
        latencies = [float(x) for x in out.split()]
        _, hwm = collector.memory()
    finally:
        collector.close()
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    print(f"\n### {scrapers} concurrent scrapers, 1,000 nodes, {seconds:g} s\n")
    print("| scrapes | RSS before | peak RSS (sampled / VmHWM) | /healthz p50 | p99 | max |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(
        f"| {scrapes} | {rss_before:.0f} MiB | {peak:.0f} / {hwm:.0f} MiB | {pct(0.5):.1f} ms "
        f"| {pct(0.99):.1f} ms | {latencies[-1] * 1000:.1f} ms |"
    )


def part_coverage() -> None:
    profile = load_profile("runai-2020")
    print("\n### agent_coverage with stale nodes (in process)\n")
    print("| stale nodes | time (median of 5) |")
    print("| --- | --- |")
    for n in (1000, 2000, 4000, 8000):
        nodes = tuple(
            NodeEntry.of(
                pb.NodeReport(node_name=f"n{i:05d}"),
                received_at=0.0,
                clock_skew_seconds=0.0,
                first_seen=0.0,
                up=False,
            )
            for i in range(n)
        )
        state = AgentReports(
            taken_at=1000.0,
            nodes=nodes,
            stale_after_seconds=90,
            heartbeat_interval=30,
            reports_received=n,
            rejected=(),
            version=1,
        )
        times = []
        for _ in range(5):
            view = Evidence(state=state, profile=profile, now=1000.0)
            started = time.perf_counter()
            agent_coverage.evaluate(view)
            times.append(time.perf_counter() - started)
        print(f"| {n:,} | {statistics.median(times) * 1000:.1f} ms |")


def probe(url: str, seconds: float) -> None:
    """--probe mode: GET `url` every 50 ms for `seconds`, print each latency (s)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        connection.request("GET", parts.path)
        connection.getresponse().read()
        connection.close()
        print(time.perf_counter() - started, flush=True)
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    parser.add_argument("--names", type=int, default=100_000)
    parser.add_argument("--big", type=int, default=2_000)
    parser.add_argument("--scrapers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--skip", default="", help="comma-separated: flood,scrapers,coverage")
    args = parser.parse_args()
    if args.probe:
        probe(args.probe, args.seconds)
        return
    skip = set(args.skip.split(","))
    limits = LimitsConfig()
    print(
        f"Default limits: max_nodes {limits.max_nodes}, max_state_bytes "
        f"{limits.max_state_bytes // MIB} MiB, max_label_length {limits.max_label_length}, "
        f"max_text_length {limits.max_text_length}; shipped memory limit 512 MiB; "
        f"nproc {os.cpu_count()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        if "flood" not in skip:
            asyncio.run(part_flood(Path(tmp), args.names, args.big))
        if "scrapers" not in skip:
            asyncio.run(part_scrapers(Path(tmp), args.scrapers, args.seconds))
    if "coverage" not in skip:
        part_coverage()


if __name__ == "__main__":
    main()
