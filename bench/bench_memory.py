"""Benchmark: what the collector holds per node, in process (RSS, and tracemalloc by module).

N nodes of bench_ingest's shape (an 8-GPU node, 7 targets, 2 mounts; ~3.3 KB serialized)
report into one CollectorService through the Report handler's own path (decode,
validate, store: `ReportServicer._store`, fresh bytes per report as gRPC hands them
over), spread over one heartbeat of 30 steps; after each step the service does what it
does every second (judge, pre-encode /metrics), and every 15 steps a scrape renders the
gzip body (kept until something changes). Then every node reports `--rounds` more times
(new sequence, a few targets flipping). Printed after each heartbeat: RSS growth over
the idle service, per node. No clock is waited for: a step takes as long as its work.
Also printed: CPU milliseconds per step of ingest (decode, validate, store), judging,
pre-encoding and scraping (averaged over the steps after the fill; the pre-encoding
includes its 2 ms pauses only as the CPU they do not use).

`--trace N` runs tracemalloc at N nodes instead (slow; Python objects only: upb's
decoded messages and allocator slack do not show there) and prints KiB per node by the
module that allocated. `--collector-source DIR` measures another checkout's collector
(e.g. `git archive <commit>`), for before/after in one session. No servers, no sockets.

Run: .venv/bin/python bench/bench_memory.py [--sizes 5000,10000] [--rounds 3] [--trace 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import TARGETS, make_report, node_name

KIB = 1024
TICKS = 30
SCRAPE_TICKS = 15


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def run(n: int, rounds: int, trace: bool) -> dict[str, Any]:
    from collector.auth import Identity
    from collector.config import CollectorConfig, LimitsConfig, ListenConfig
    from collector.service import CollectorService

    config = CollectorConfig(
        listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"),
        kubernetes={"mode": "none"},  # type: ignore[arg-type]
        limits=LimitsConfig(max_nodes=n + 10, max_state_bytes=1 << 30),
    )
    try:
        # What collector.cli does before it builds the service (a tree without it: no).
        from collector.allocator import fix_mmap_threshold

        fixed = fix_mmap_threshold()
    except ImportError:
        fixed = False
    service = CollectorService(config)
    identity = Identity(principal="bench")
    idle = rss()
    if trace:
        tracemalloc.start(1)
    row: dict[str, Any] = {
        "nodes": n,
        "mmap_threshold_fixed": fixed,
        "idle_mib": round(idle / 2**20, 1),
        "per_node_kib": [],
    }
    # CPU-seconds (process-wide: judging runs in a worker thread) of each part of the
    # heartbeats after the fill, where a step replaces 1/TICKS of the reports.
    cpu = dict.fromkeys(("ingest", "judge", "prepare", "scrape"), 0.0)

    @contextmanager
    def timed(part: str, round_: int) -> Iterator[None]:
        started = time.process_time()
        yield
        if round_:
            cpu[part] += time.process_time() - started

    for round_ in range(rounds + 1):
        # One heartbeat in TICKS steps, as the service sees it: a share of the nodes
        # reports, then the once-a-second judging and pre-encoding; a scrape every
        # SCRAPE_TICKS (the shipped 30 s heartbeat, a 15 s scrape interval).
        for tick in range(TICKS):
            now = time.time()
            raws = []
            for i in range(tick * n // TICKS, (tick + 1) * n // TICKS):
                # A few nodes per round fail a target, as on a real cluster.
                failing = (i + round_) % 50 == 0
                down = frozenset({TARGETS[i % len(TARGETS)]}) if failing else frozenset()
                report = make_report(node_name(i), node_name((i + 1) % n), round_ + 1, down)
                raws.append(report.SerializeToString())
            with timed("ingest", round_):
                for raw in raws:
                    _node, refusal = service.servicer._store(raw, now, identity)
                    assert refusal is None, refusal
            del raws, raw
            with timed("judge", round_):
                asyncio.run(service.observe())
            with timed("prepare", round_):
                service.exposition.prepare(service.current_view())
            if tick % SCRAPE_TICKS == SCRAPE_TICKS - 1:
                with timed("scrape", round_):
                    asyncio.run(service.web._render_metrics())
        row["per_node_kib"].append(round((rss() - idle) / n / KIB, 1))
    if rounds:
        ticks = rounds * TICKS
        row["cpu_ms_per_step"] = {k: round(1e3 * v / ticks, 1) for k, v in cpu.items()}
    # What the allocator keeps free but unreturned: RSS once glibc gives back what it can
    # (a diagnostic; the service never calls it).
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    row["per_node_kib_after_malloc_trim"] = round((rss() - idle) / n / KIB, 1)
    if trace:
        snapshot = tracemalloc.take_snapshot()
        tracemalloc.stop()
        by_module: dict[str, int] = {}
        for stat in snapshot.statistics("filename"):
            name = stat.traceback[0].filename
            parts = Path(name).parts
            key = next(
                (
                    "/".join(parts[i:])
                    for i in range(len(parts))
                    if parts[i] in ("collector", "preflight", "bench")
                ),
                Path(name).name,
            )
            by_module[key] = by_module.get(key, 0) + stat.size
        top = sorted(by_module.items(), key=lambda kv: -kv[1])[:12]
        row["traced_kib_per_node"] = {k: round(v / n / KIB, 2) for k, v in top}
        row["traced_total_kib_per_node"] = round(sum(by_module.values()) / n / KIB, 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,10000")
    parser.add_argument("--rounds", type=int, default=3, help="reports per node after the fill")
    parser.add_argument("--trace", type=int, metavar="N", help="tracemalloc at N nodes instead")
    parser.add_argument("--collector-source", metavar="DIR", help="another checkout's collector")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        if args.collector_source:
            sys.path.insert(0, str(Path(args.collector_source).resolve()))
        print(json.dumps(run(args.one, args.rounds, bool(args.trace))), flush=True)
        return
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()}")
    sizes = [args.trace] if args.trace else [int(s) for s in args.sizes.split(",")]
    for n in sizes:
        # A process per size: what one size left in the allocator never counts for the next.
        command = [sys.executable, __file__, "--one", str(n), "--rounds", str(args.rounds)]
        if args.trace:
            command += ["--trace", str(n)]
        if args.collector_source:
            command += ["--collector-source", args.collector_source]
        subprocess.run(command, check=True)
    print(f"# load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
