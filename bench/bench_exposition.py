"""Benchmark: /metrics at 100 to 10,000 simulated nodes, ours vs labelled Gauges.

Simulated nodes report 8 egress targets (5 % failing, a few with tls_untrusted), one or
two mounts, hardware and GPUs, through the real ClusterState. Two parts:

1. Render, in this process: the view (a fresh state snapshot with the latest verdicts,
   what web.py computes on the event loop before rendering), the judging of every rule
   (once per evaluation interval, in a worker thread), then `collector.exposition.Exposition.render`
   cold (empty node cache), warm with half the nodes re-reported since the last scrape
   (heartbeat 30 s, scrape every 15 s), and warm with none; then the naive alternative:
   one prometheus_client Gauge per family in a normal registry, labels set on every
   report from the same samples (stale label sets removed), rendered by generate_latest.
   Bytes and series count of each output.
2. Report latency while /metrics is scraped: a real CollectorService on loopback in
   this process, preloaded with N nodes; a client process sends Report RPCs at a steady
   rate (open loop) for a few seconds without scrapes, then again while it scrapes
   /metrics every second (back to back when a scrape takes longer); p50/p99 of the
   RPCs. Same with the naive Gauges wired in (updated inside Report, rendered by
   generate_latest in a worker thread). The benchmark sets the service's
   `web.render_gzip` (what /metrics renders through) to choose the variant.

Loopback only, bounded durations, stops by itself. Not part of `make test`.
Run: .venv/bin/python bench/bench_exposition.py [--sizes 100,1000,5000,10000]
     [--repeat 3] [--rate 200] [--seconds 6] [--scrape-interval 1] [--skip-render|latency]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import grpc.aio
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from collector import exposition
from collector.concerns.egress import node_cert_expiries
from collector.config import CollectorConfig, LimitsConfig, ListenConfig
from collector.exposition import (
    FAMILIES,
    Exposition,
    Family,
    cluster_samples,
    node_samples,
)
from collector.published import Published
from collector.rules.model import Evidence
from collector.service import CollectorService
from collector.state import ClusterState, NodeEntry
from preflight.v1 import report_pb2 as pb
from preflight.v1 import report_pb2_grpc as pb_grpc

TARGETS = (
    "runai-charts.storage.googleapis.com",
    "hub.docker.com",
    "gcr.io/run-ai-prod",
    "quay.io",
    "prometheus-us-central1.grafana.net",
    "app.run.ai",
    "registry.example.internal",
    "artifacts.example.internal",
)
PHASES_DIRECT = (
    pb.PHASE_RESOLVE,
    pb.PHASE_CONNECT,
    pb.PHASE_TLS,
    pb.PHASE_REQUEST,
    pb.PHASE_TRANSFER,
)


def node_name(i: int) -> str:
    return f"gpu-node-{i:05d}.cluster.example.internal"


def make_report(i: int, sequence: int, rng: random.Random) -> pb.NodeReport:
    now = time.time()
    r = pb.NodeReport(
        node_name=node_name(i),
        agent_version="0.1.0",
        instance_id=f"instance-{i}",
        sequence=sequence,
        hardware=pb.HardwareFacts(
            logical_cores=96,
            memory_total_bytes=768 * 2**30,
            kernel_release="6.1.0-18-amd64",
            os_release="Ubuntu 22.04.4 LTS",
            architecture="x86_64",
        ),
        gpus=pb.GpuFacts(pci_count=8, driver_count=8),
    )
    r.sent_at.FromNanoseconds(int(now * 1e9))
    for target in TARGETS:
        e = r.egress.add(target=target)
        e.started_at.FromNanoseconds(int((now - 1) * 1e9))
        if rng.random() < 0.05:
            e.outcome = pb.OUTCOME_DOWN
            if rng.random() < 0.2:
                e.reason = pb.REASON_TLS_UNTRUSTED
                e.certificate.issuer = "CN=Corp Inspection CA,O=Corp"
                e.certificate.sha256_fingerprint = "ab" * 32
                phases: tuple[pb.Phase.ValueType, ...] = PHASES_DIRECT[:3]
            else:
                e.reason = pb.REASON_CONNECT_TIMEOUT
                phases = PHASES_DIRECT[:2]
        else:
            e.outcome = pb.OUTCOME_UP
            e.certificate.not_after.FromSeconds(int(now) + 86400 * rng.randint(30, 90))
            phases = PHASES_DIRECT
        for p in phases:
            e.phases.add(phase=p, duration_seconds=rng.uniform(0.0005, 0.2))
    for path in ("/mnt/shared", "/mnt/datasets")[: 1 + i % 2]:
        m = r.mounts.add(path=path, state=pb.MOUNT_STATE_MOUNTED, write_check=pb.WRITE_CHECK_OK)
        m.marker.peers.add(node_name=node_name(i + 1))
    return r


def limits() -> LimitsConfig:
    return LimitsConfig(max_targets=16, max_mounts=4)


def fill(state: ClusterState, n: int, sequence: int, rng: random.Random) -> None:
    now = time.time()
    for i in range(n):
        state.accept(make_report(i, sequence, rng), now)


# ---------------------------------------------------------------- the naive alternative


class NaiveGauges:
    """What one would write first: labelled Gauges in a registry, set on every report."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.gauges = {
            f: Gauge(
                f.name.removesuffix("_total"),
                f.help,
                labelnames=f.labels,
                registry=self.registry,
            )
            for f in FAMILIES
        }
        # node → label sets it set last time, so the ones that vanished are removed.
        self.owned: dict[str, set[tuple[Family, tuple[str, ...]]]] = {}
        self.cluster_owned: set[tuple[Family, tuple[str, ...]]] = set()

    def update_node(self, entry: NodeEntry) -> None:
        now_owned = set()
        # "": the plan version of the views below (a default PlanIndex), as render sees it.
        for family, values, value in node_samples(entry, None, ""):
            self.gauges[family].labels(*values).set(value)
            now_owned.add((family, values))
        for family, values in self.owned.get(entry.name, set()) - now_owned:
            self.gauges[family].remove(*values)
        self.owned[entry.name] = now_owned

    def render(self, view: Published) -> bytes:
        now_owned = set()
        expiries = [node_cert_expiries(n) for n in view.state.nodes]
        for family, values, value in cluster_samples(view, expiries):
            gauge = self.gauges[family]
            (gauge.labels(*values) if values else gauge).set(value)
            now_owned.add((family, values))
        for family, values in self.cluster_owned - now_owned:
            if values:
                self.gauges[family].remove(*values)
        self.cluster_owned = now_owned
        return generate_latest(self.registry)


def series(text: bytes) -> int:
    return sum(1 for line in text.split(b"\n") if line and not line.startswith(b"#"))


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median seconds over `repeat` runs and the last result."""
    times, result = [], None
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def bench_render(n: int, repeat: int) -> dict[str, Any]:
    rng = random.Random(n)
    service = CollectorService(bench_config())
    state = service.state
    fill(state, n, 1, rng)
    now = time.time()
    judged = Evidence(state=state.snapshot(now), profile=service.profile, now=now)
    judge_s, _ = timed(lambda: service._judge(judged), 1)  # rules: a worker thread, 1/s
    view_s, view = timed(service.web.provide, 1)  # per scrape, on the loop: a snapshot

    cold_s, text = timed(lambda: Exposition().render(view), repeat)
    cache = Exposition()
    cache.render(view)
    warm0_s, _ = timed(lambda: cache.render(view), repeat)

    # Only the render is timed: re-reporting and the view are set up outside.
    warm50 = []
    for _ in range(repeat):
        now = time.time()
        for i in range(0, n, 2):
            state.accept(make_report(i, state.version + 2, rng), now)
        fresh = service.web.provide()
        gc.collect()
        started = time.perf_counter()
        cache.render(fresh)
        warm50.append(time.perf_counter() - started)

    # The naive Gauges on the same final state as ours.
    final = service.web.provide()
    text = cache.render(final)
    naive = NaiveGauges()

    def set_all() -> None:
        for entry in final.state.nodes:
            naive.update_node(entry)

    update_s, _ = timed(set_all, 1)
    naive_s, naive_text = timed(lambda: naive.render(final), max(1, repeat - 1))
    return {
        "nodes": n,
        "series": series(text),
        "bytes": len(text),
        "naive_series": series(naive_text),
        "naive_bytes": len(naive_text),
        "view_s": view_s,
        "judge_s": judge_s,
        "cold_s": cold_s,
        "warm50_s": statistics.median(warm50),
        "warm0_s": warm0_s,
        "naive_update_s": update_s,
        "naive_s": naive_s,
    }


# ---------------------------------------------------------------- Report latency


def bench_config() -> CollectorConfig:
    return CollectorConfig(
        listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"),
        heartbeat_interval=30.0,
        limits=limits(),
        forget_after=3600.0,
    )


async def serve_and_measure(
    n: int, naive: bool, rate: float, seconds: float, interval: float
) -> dict[str, dict[str, float]]:
    """A collector with n nodes in this process; the client (another process) measures."""
    service = CollectorService(bench_config())
    fill(service.state, n, 1, random.Random(n))
    if naive:
        gauges = NaiveGauges()
        for entry in service.state.snapshot(time.time()).nodes:
            gauges.update_node(entry)
        accept = service.state.accept

        def accept_and_set(report: pb.NodeReport, now: float, *args: Any, **kw: Any) -> None:
            accept(report, now, *args, **kw)
            entry = service.state._nodes[report.node_name]
            gauges.update_node(entry)

        service.state.accept = accept_and_set  # type: ignore[method-assign]
        service.web.render = gauges.render
        service.web.render_gzip = service.web._gzip_rendered
        # Nothing to pre-encode for: the naive registry renders at scrape time.
        service.exposition.prepare = lambda view: None  # type: ignore[method-assign]
    # Otherwise the service's own Exposition, pre-encoded in the background as shipped.
    await service.start()
    try:
        results = {}
        for scrape in (False, True):
            client = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--client",
                json.dumps(
                    {
                        "grpc": service.grpc_port,
                        "http": service.http_port,
                        "nodes": n,
                        "rate": rate,
                        "seconds": seconds,
                        "scrape": scrape,
                        "interval": interval,
                        # Above the preload's and the previous phase's sequences.
                        "sequence": 2_000_000 if scrape else 1_000,
                    }
                ),
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await client.communicate()
            results["scrape" if scrape else "idle"] = json.loads(out)
        return results
    finally:
        await service.stop()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def client(args: dict[str, Any]) -> dict[str, float]:
    """Open-loop Report sender (+ back-to-back scraper); prints latency figures."""
    import aiohttp

    rng = random.Random(1)
    n, rate, seconds = args["nodes"], args["rate"], args["seconds"]
    messages = [
        make_report(i % n, args["sequence"] + i, rng) for i in range(int(rate * seconds) + 1)
    ]
    latencies: list[float] = []
    scrapes: list[float] = []
    stop = asyncio.Event()

    async def scraper() -> None:
        url = f"http://127.0.0.1:{args['http']}/metrics"
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                started = time.perf_counter()
                async with session.get(url) as response:
                    await response.read()
                took = time.perf_counter() - started
                scrapes.append(took)
                # Like Prometheus: the next scrape starts one interval after this one did.
                await asyncio.sleep(max(0.0, args["interval"] - took))

    async with grpc.aio.insecure_channel(f"127.0.0.1:{args['grpc']}") as channel:
        stub = pb_grpc.CollectorStub(channel)
        await stub.Report(messages[0], timeout=30)  # connect before timing

        async def one(message: pb.NodeReport) -> None:
            started = time.perf_counter()
            await stub.Report(message, timeout=60)
            latencies.append(time.perf_counter() - started)

        scraping = asyncio.create_task(scraper()) if args["scrape"] else None
        if scraping:
            await asyncio.sleep(0.5)  # the first scrape is under way
        tasks = []
        begin = time.perf_counter()
        for k, message in enumerate(messages[1:]):
            delay = begin + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(message)))
        await asyncio.gather(*tasks)
        stop.set()
        if scraping:
            await scraping
    return {
        "reports": len(latencies),
        "p50_ms": 1000 * percentile(latencies, 0.5),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "max_ms": 1000 * max(latencies),
        "scrapes": len(scrapes),
        "scrape_s": statistics.median(scrapes) if scrapes else float("nan"),
    }


# ---------------------------------------------------------------- table


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000,10000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0, help="Report RPCs per second")
    parser.add_argument("--seconds", type=float, default=6.0, help="per latency phase")
    parser.add_argument(
        "--scrape-interval", type=float, default=1.0, help="seconds between scrape starts"
    )
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-render", action="store_true")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        print(json.dumps(asyncio.run(client(json.loads(args.client)))))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    started = time.time()
    print(
        f"nproc {os.cpu_count()}, Python {sys.version.split()[0]}, {len(TARGETS)} targets per node"
    )
    render_rows = [
        [
            "nodes",
            "series",
            "bytes",
            "view (loop)",
            "judge (thread)",
            "ours cold",
            "ours 50% new",
            "ours 0% new",
            "naive render",
            "naive set all",
        ]
    ]
    for n in [] if args.skip_render else sizes:
        # Fewer repetitions at the big sizes keep the whole run within a few minutes.
        r = bench_render(n, args.repeat if n <= 1000 else max(1, args.repeat - 1))
        assert r["series"] == r["naive_series"], (r["series"], r["naive_series"])
        render_rows.append(
            [
                f"{n:,}",
                f"{r['series']:,}",
                f"{r['bytes'] / 2**20:.1f} MiB",
                ms(r["view_s"]),
                ms(r["judge_s"]),
                ms(r["cold_s"]),
                ms(r["warm50_s"]),
                ms(r["warm0_s"]),
                ms(r["naive_s"]),
                ms(r["naive_update_s"]),
            ]
        )
        print(f"  rendered {n} nodes ({time.time() - started:.0f}s)", flush=True)
        exposition._default = Exposition()
        gc.collect()
    if not args.skip_render:
        print("\nRender (median; ours and naive produce the same series)")
        print(table(render_rows))
    if args.skip_latency:
        return
    latency_rows = [
        [
            "nodes",
            "variant",
            "Report p50 idle",
            "Report p99 idle",
            "p50 scraping",
            "p99 scraping",
            "max scraping",
            "scrapes (median time)",
        ]
    ]
    for n in sizes:
        for naive in (False, True):
            res = asyncio.run(
                serve_and_measure(n, naive, args.rate, args.seconds, args.scrape_interval)
            )
            idle, busy = res["idle"], res["scrape"]
            latency_rows.append(
                [
                    f"{n:,}",
                    "naive Gauges" if naive else "ours",
                    f"{idle['p50_ms']:.1f} ms",
                    f"{idle['p99_ms']:.1f} ms",
                    f"{busy['p50_ms']:.1f} ms",
                    f"{busy['p99_ms']:.1f} ms",
                    f"{busy['max_ms']:.0f} ms",
                    f"{busy['scrapes']} ({busy['scrape_s']:.2f} s)",
                ]
            )
            print(
                f"  latency {n} nodes {'naive' if naive else 'ours'}"
                f" ({time.time() - started:.0f}s)",
                flush=True,
            )
            gc.collect()
    print(
        f"\nReport latency, {args.rate:g} reports/s for {args.seconds:g}s each: idle, then"
        f" while /metrics is scraped every {args.scrape_interval:g}s (back to back when slower)"
    )
    print(table(latency_rows))
    print(f"\ntotal {time.time() - started:.0f}s")


if __name__ == "__main__":
    main()
