"""Benchmark: one collector process under N simulated agents over real gRPC.

The collector runs as its own process (`preflight-collector`, standalone, plaintext,
`auth.mode: none`), as in a pod. Load generators are separate processes: each
simulates a share of the N agents, with the report of a real GPU node (7 egress
targets with their phases and certificates, 2 mounts with peer markers, 8 GPUs with
PCI, NVML and kernel-driver records), one report per node every (compressed)
heartbeat at a random phase, plus report-on-change bursts: every second a fraction of
the nodes flips one target's outcome and reports at once. Agents share channels (one
per 100 simulated agents): 10,000 real channels would measure the load generator.

Two phases of `--seconds` each, side by side in one run:

- ingest only: accepted reports/s per collector CPU-second (the collector's user+system
  CPU time from /proc over the phase), Report p50/p99 as the agents see it;
- ingest while scraping `/metrics` every `--scrape-every` seconds: render time and
  bytes of each scrape (the first is cold), Report p50/p99 of reports sent during a
  scrape, and the collector's CPU.

Also: collector RSS per node (RSS after the run minus RSS of the idle collector, over
N), and verdict latency: an extra agent flips a target down and up again, and the time
from its accepted Report to the change in /api/v1/verdicts is measured.

Those two phases offer the agents' real rate (N / heartbeat reports/s plus the changes):
there the collector's fixed per-second work (judging once a second, formatting the text
of the nodes that reported) dominates, and "reports per collector CPU-second" is a
figure of that rate, not of what a core can take. `--saturate` measures the capacity
instead, with a collector of its own: after every node's first report, the generators
send the N nodes' reports round robin (heartbeats, the same change reports per second
as above, sent first) as fast as the collector answers, with `--inflight` calls in
flight per generator process (more than the collector's handler threads), for
`--seconds`. Its "accepted reports per collector CPU-second" (children included) is a
capacity per core with the fixed per-second work amortised over as many reports as the
collector takes: the figure issue 15's goal (>= 3,000) is about. The collector's rate
limit is raised for it (min_report_interval 1 ms, still checked per report); Report
p50/p99 there are the queue at saturation, not an agent's latency. With
`--saturate-scrape-every S` the collector is also scraped every S seconds (twice before
the phase), as a monitored one is: it then formats /metrics text for the scrapes, not
for every report (collector.service.PREPARE_LEAD_SECONDS).

Loopback only, bounded durations, stops by itself. Not part of `make test`.
Run: .venv/bin/python bench/bench_ingest.py [--sizes 1000,5000] [--seconds 30]
     [--heartbeat 10] [--workers 2] [--change-rate 0.01]
     .venv/bin/python bench/bench_ingest.py --saturate [--sizes 1000,10000] [--seconds 20]
     [--inflight 32] [--saturate-scrape-every 30] [--collector-source DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import psutil  # type: ignore[import-untyped]
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from preflight.v1 import report_pb2 as pb  # noqa: E402
from preflight.v1 import report_pb2_grpc as pb_grpc  # noqa: E402

BIN = Path(sys.executable).parent
TARGETS = (
    "runai-charts.storage.googleapis.com",
    "hub.docker.com",
    "gcr.io/run-ai-prod",
    "quay.io",
    "nvcr.io",
    "prometheus-us-central1.grafana.net",
    "app.run.ai",
)
PHASES = (pb.PHASE_RESOLVE, pb.PHASE_CONNECT, pb.PHASE_TLS, pb.PHASE_REQUEST, pb.PHASE_TRANSFER)
AGENTS_PER_CHANNEL = 100
PROBE_NODE = "probe-node-verdict"


def node_name(i: int) -> str:
    return f"gpu-node-{i:05d}.cluster.example.internal"


def make_report(name: str, peer: str, sequence: int, down: frozenset[str]) -> pb.NodeReport:
    """The report of a healthy 8-GPU node, with the targets in `down` failing."""
    now = time.time()
    r = pb.NodeReport(
        node_name=name,
        agent_version="0.1.0",
        instance_id=f"{name}-instance",
        sequence=sequence,
        probe_interval_seconds=15,
        heartbeat_interval_seconds=30,
        plan_version="a" * 16,
        plan_source=pb.PLAN_SOURCE_COLLECTOR,
        hardware=pb.HardwareFacts(
            logical_cores=96,
            memory_total_bytes=768 * 2**30,
            kernel_release="6.1.0-18-amd64",
            os_release="Ubuntu 22.04.4 LTS",
            architecture="x86_64",
        ),
    )
    r.sent_at.FromNanoseconds(int(now * 1e9))
    g = r.gpus
    g.pci_scanned = True
    g.pci_count = g.driver_count = g.kernel_driver_count = 8
    g.driver_status = pb.DRIVER_STATUS_LOADED
    g.driver_version = "550.54.15"
    g.cuda_version = "12.4"
    g.kernel_module_version = "550.54.15"
    for k in range(8):
        bus = f"0000:{0x18 + k * 0x10:02x}:00.0"
        g.pci_devices.add(
            address=bus,
            vendor_id="0x10de",
            device_id="0x2330",
            class_code="0x030200",
            kernel_driver="nvidia",
        )
        g.devices.add(
            index=k,
            uuid=f"GPU-{k:08x}-1111-2222-3333-{abs(hash(name)) % 10**12:012d}",
            name="NVIDIA H100 80GB HBM3",
            memory_total_bytes=80 * 2**30,
            pci_bus_id=bus,
        )
        g.kernel_gpus.add(bus_location=bus, model="NVIDIA H100 80GB HBM3", uuid=f"GPU-{k:08x}")
    for target in TARGETS:
        e = r.egress.add(target=target)
        e.started_at.FromNanoseconds(int((now - 1) * 1e9))
        phases: tuple[pb.Phase.ValueType, ...]
        if target in down:
            e.outcome = pb.OUTCOME_DOWN
            e.reason = pb.REASON_CONNECT_TIMEOUT
            e.failed_phase = pb.PHASE_CONNECT
            e.message = f"connect to {target}:443 timed out after 10s"
            phases = PHASES[:2]
        else:
            e.outcome = pb.OUTCOME_UP
            e.http_status = 200
            e.certificate.not_after.FromSeconds(int(now) + 86400 * 60)
            e.certificate.issuer = "CN=GTS CA 1C3,O=Google Trust Services LLC,C=US"
            phases = PHASES
        for p in phases:
            e.phases.add(phase=p, duration_seconds=0.004 + 0.001 * p)
        e.total_seconds = 0.05
    for path in ("/mnt/nas", "/mnt/datasets"):
        m = r.mounts.add(
            path=path,
            state=pb.MOUNT_STATE_MOUNTED,
            fs_type="nfs4",
            network_filesystem=True,
            source=f"nas.example.internal:/export{path}",
            options="rw,relatime,vers=4.2",
            capacity_bytes=100 * 2**40,
            free_bytes=40 * 2**40,
            write_check=pb.WRITE_CHECK_OK,
            write_latency_seconds=0.003,
            duration_seconds=0.01,
        )
        m.marker.nonce = "n" * 16
        m.marker.written_at.FromSeconds(int(now))
        # A healthy shared volume: the peer's marker is fresh (the rule proves sharing).
        seen = m.marker.peers.add(node_name=peer, nonce="p" * 16)
        seen.written_at.FromSeconds(int(now) - 5)
    return r


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# ------------------------------------------------------------------ generator process


async def generate(spec: dict[str, Any]) -> dict[str, Any]:
    """One load-generator process: nodes [first, last), until `duration` has passed."""
    rng = random.Random(spec["first"])
    nodes = list(range(spec["first"], spec["last"]))
    channels = [
        grpc.aio.insecure_channel(spec["address"], options=[("grpc.enable_http_proxy", 0)])
        for _ in range(max(1, len(nodes) // AGENTS_PER_CHANNEL))
    ]
    stubs = [pb_grpc.CollectorStub(c) for c in channels]
    sequence = dict.fromkeys(nodes, 0)
    down: dict[int, frozenset[str]] = dict.fromkeys(nodes, frozenset())
    samples: list[tuple[float, float]] = []  # (sent at, latency)
    errors: dict[str, int] = {}
    accepted = 0
    inflight: set[asyncio.Task[None]] = set()

    async def send(i: int, record: bool = True) -> None:
        nonlocal accepted
        sequence[i] += 1
        message = make_report(node_name(i), node_name(i + 1), sequence[i], down[i])
        stub = stubs[i % len(stubs)]
        started_wall, started = time.time(), time.perf_counter()
        try:
            await stub.Report(message, timeout=60)
        except grpc.aio.AioRpcError as error:
            # RESOURCE_EXHAUSTED is the rate limit or gRPC's own bound on concurrent calls:
            # the first words of the detail tell which.
            key = error.code().name
            if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                key += f" ({' '.join((error.details() or '').split()[:2])})"
            errors[key] = errors.get(key, 0) + 1
            return
        accepted += 1
        if record:
            samples.append((started_wall, time.perf_counter() - started))

    # Every node's first report, before timing: the collector holds all N.
    for start in range(0, len(nodes), 500):
        await asyncio.gather(*(send(i, record=False) for i in nodes[start : start + 500]))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    accepted = 0
    begin = time.perf_counter()
    heartbeat, duration = spec["heartbeat"], spec["duration"]
    # Each node's heartbeat at its own phase, as jittered agents spread out.
    due = sorted((rng.uniform(0, heartbeat), i) for i in nodes)
    next_change = 1.0
    k = 0
    while (now := time.perf_counter() - begin) < duration:
        while due[k % len(due)][0] + heartbeat * (k // len(due)) <= now:
            task = asyncio.create_task(send(due[k % len(due)][1]))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            k += 1
        if now >= next_change:
            # Report-on-change: a fraction of the nodes flips one target this second.
            for i in rng.sample(nodes, max(1, int(len(nodes) * spec["change_rate"]))):
                target = rng.choice(TARGETS)
                down[i] = down[i] ^ {target}
                task = asyncio.create_task(send(i))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
            next_change += 1.0
        await asyncio.sleep(0.005)
    if inflight:
        await asyncio.wait(inflight, timeout=60)
    for c in channels:
        await c.close()
    return {"samples": samples, "errors": errors, "accepted": accepted}


async def saturate(spec: dict[str, Any]) -> dict[str, Any]:
    """One load-generator process at saturation: nodes [first, last) round robin, as fast
    as the collector answers, `inflight` calls outstanding, for `duration` seconds.

    Each node's message is built once and re-serialized per send with the next sequence
    and the current sent_at (a few microseconds; building one costs ~0.5 ms), so that the
    generators spend their CPU on gRPC, not on protobuf: they share the machine with the
    collector. Calls go out as bytes (the wire of a unary call, as agents send).
    """
    rng = random.Random(spec["first"])
    nodes = list(range(spec["first"], spec["last"]))
    channels = [
        grpc.aio.insecure_channel(spec["address"], options=[("grpc.enable_http_proxy", 0)])
        for _ in range(max(1, len(nodes) // AGENTS_PER_CHANNEL))
    ]
    calls = [c.unary_unary("/preflight.v1.Collector/Report") for c in channels]
    down: dict[int, frozenset[str]] = dict.fromkeys(nodes, frozenset())
    messages = {i: make_report(node_name(i), node_name(i + 1), 0, down[i]) for i in nodes}
    latencies: list[float] = []
    errors: dict[str, int] = {}
    window = [0.0, float("inf")]  # completions counted in [begin, end)
    accepted = 0

    async def send(i: int) -> None:
        nonlocal accepted
        message = messages[i]
        message.sequence += 1
        message.sent_at.FromNanoseconds(time.time_ns())
        started = time.perf_counter()
        try:
            await calls[i % len(calls)](message.SerializeToString(), timeout=60)
        except grpc.aio.AioRpcError as error:
            if window[0] <= time.perf_counter() < window[1]:
                key = error.code().name
                if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    key += f" ({' '.join((error.details() or '').split()[:2])})"
                errors[key] = errors.get(key, 0) + 1
            return
        done = time.perf_counter()
        if window[0] <= done < window[1]:
            accepted += 1
            latencies.append(round(done - started, 6))

    for start in range(0, len(nodes), 500):
        await asyncio.gather(*(send(i) for i in nodes[start : start + 500]))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    begin = time.perf_counter()
    window[:] = [begin, begin + spec["duration"]]
    changes: list[int] = []  # nodes whose change report is due: sent before heartbeats
    cursor = itertools.cycle(nodes)

    async def changer() -> None:
        while time.perf_counter() < window[1]:
            # Report-on-change: the same share of the nodes per second as the heartbeat
            # phases, each flipping one target; their reports jump the round robin.
            for i in rng.sample(nodes, max(1, int(len(nodes) * spec["change_rate"]))):
                down[i] = down[i] ^ {rng.choice(TARGETS)}
                sequence = messages[i].sequence
                messages[i] = make_report(node_name(i), node_name(i + 1), sequence, down[i])
                changes.append(i)
            await asyncio.sleep(1.0)

    async def worker() -> None:
        while time.perf_counter() < window[1]:
            await send(changes.pop() if changes else next(cursor))

    await asyncio.gather(changer(), *(worker() for _ in range(spec["inflight"])))
    for c in channels:
        await c.close()
    return {"latencies": latencies, "errors": errors, "accepted": accepted}


# ------------------------------------------------------------------ measuring process


def start_generators(flag: str, specs: list[dict[str, Any]]) -> list[subprocess.Popen[str]]:
    """One load-generator process per spec (this file run with `flag`), each ready to go."""
    generators = [
        subprocess.Popen(
            [sys.executable, __file__, flag, json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for spec in specs
    ]
    for g in generators:
        assert g.stdout is not None and g.stdout.readline().strip() == "ready"
    return generators


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU of the collector and of its children (the /metrics encoder)."""
    total = 0.0
    for p in (process, *process.children(recursive=True)):
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def rss_by_process(process: psutil.Process) -> dict[str, float]:
    """MiB of RSS of the collector and of each child, by what it runs."""
    out: dict[str, float] = {}
    for p in (process, *process.children(recursive=True)):
        try:
            name = next((a for a in p.cmdline() if a.startswith("collector.")), "collector")
            out[name] = out.get(name, 0.0) + p.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            continue
    return out


def cpu_by_process(process: psutil.Process) -> dict[str, float]:
    """User + system CPU seconds of the collector and of each child, by what it runs."""
    out: dict[str, float] = {}
    for p in (process, *process.children(recursive=True)):
        try:
            name = next((a for a in p.cmdline() if a.startswith("collector.")), "collector")
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        out[name] = out.get(name, 0.0) + t.user + t.system
    return out


def rss_bytes(process: psutil.Process) -> int:
    """Resident memory of the collector and of its children, as a pod's limit counts it."""
    total = 0
    for p in (process, *process.children(recursive=True)):
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def scrape(url: str) -> tuple[float, int]:
    """One scrape as Prometheus makes it (gzip); (seconds, bytes of text)."""
    started = time.perf_counter()
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=120) as response:
        body = response.read()
    seconds = time.perf_counter() - started
    return seconds, len(gzip.decompress(body))


async def verdict_latencies(
    grpc_address: str, http: str, stop_at: float, latencies: list[float], errors: list[str]
) -> None:
    """An extra agent flips a target down/up; accepted Report → visible in the verdicts."""
    channel = grpc.aio.insecure_channel(grpc_address, options=[("grpc.enable_http_proxy", 0)])
    stub = pb_grpc.CollectorStub(channel)
    sequence = 0
    loop = asyncio.get_running_loop()

    def failing_nodes() -> set[str]:
        with urllib.request.urlopen(f"{http}/api/v1/verdicts", timeout=60) as response:
            answer = json.load(response)
        [install] = [v for v in answer["verdicts"] if v["requirement"] == "egress_install"]
        return set(install["nodes"])

    down: frozenset[str] = frozenset()
    while time.time() < stop_at - 10:
        down = frozenset() if down else frozenset({TARGETS[0]})
        sequence += 1
        try:
            await stub.Report(make_report(PROBE_NODE, node_name(0), sequence, down), timeout=60)
        except grpc.aio.AioRpcError as error:
            errors.append(error.code().name)
            await asyncio.sleep(1.0)
            continue
        accepted = time.perf_counter()
        while time.time() < stop_at:
            listed = PROBE_NODE in await loop.run_in_executor(None, failing_nodes)
            if listed == bool(down):
                latencies.append(time.perf_counter() - accepted)
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.0)
    await channel.close()


def start_collector(
    n: int, args: argparse.Namespace, tmp: Path, limits: dict[str, Any] | None = None
) -> tuple[subprocess.Popen[bytes], int, str]:
    """The collector process for N nodes, listening: (process, gRPC port, HTTP base URL)."""
    grpc_port, http_port = free_port(), free_port()
    config = tmp / f"collector-{n}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": {"grpc": f"127.0.0.1:{grpc_port}", "http": f"127.0.0.1:{http_port}"},
                "heartbeat_interval": f"{args.heartbeat}s",
                "kubernetes": {"mode": "none"},
                # The bench measures capacity, not the default bounds (max_nodes 5,000).
                "limits": {"max_nodes": n + 10, "max_state_bytes": 1 << 30, **(limits or {})},
            }
        )
    )
    log = open(tmp / f"collector-{n}.log", "wb")  # noqa: SIM115
    command = [str(BIN / "preflight-collector"), "--config", str(config)]
    env = None
    if args.collector_source:
        # Another checkout's collector (e.g. `git archive main`), for before/after in one run.
        source = Path(args.collector_source).resolve()
        command = [
            sys.executable,
            # -P: `-c` would put the working directory (usually this checkout) first on
            # sys.path, ahead of PYTHONPATH, and run this tree's collector as "before".
            "-P",
            "-c",
            "from collector.cli import main; raise SystemExit(main())",
            *command[1:],
        ]
        env = {**os.environ, "PYTHONPATH": f"{source}{os.pathsep}{source / 'proto'}"}
    collector = subprocess.Popen(command, stdout=log, stderr=log, env=env)
    http = f"http://127.0.0.1:{http_port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{http}/healthz", timeout=2).read()
            break
        except OSError:
            time.sleep(0.1)
    return collector, grpc_port, http


def measure(n: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    collector, grpc_port, http = start_collector(n, args, tmp)
    try:
        proc = psutil.Process(collector.pid)
        # The encoder child imports for about a second after the collector listens.
        time.sleep(3.0)
        rss_idle = rss_bytes(proc)
        rss_idle_parts = rss_by_process(proc)
        duration = 2 * args.seconds
        share = -(-n // args.workers)
        specs: list[dict[str, Any]] = []
        for w in range(args.workers):
            spec = {
                "address": f"127.0.0.1:{grpc_port}",
                "first": w * share,
                "last": min(n, (w + 1) * share),
                "heartbeat": args.heartbeat,
                "duration": duration,
                "change_rate": args.change_rate,
            }
            specs.append(spec)
        generators = start_generators("--generator", specs)
        rss_loaded = rss_bytes(proc)
        load_before = os.getloadavg()
        begin_wall = time.time()
        for g in generators:
            assert g.stdin is not None
            g.stdin.write("go\n")
            g.stdin.flush()
        # The verdict prober runs across both phases, in a thread of its own loop.
        verdicts: list[float] = []
        verdict_errors: list[str] = []

        def prober() -> None:
            asyncio.run(
                verdict_latencies(
                    f"127.0.0.1:{grpc_port}", http, begin_wall + duration, verdicts, verdict_errors
                )
            )

        thread = threading.Thread(target=prober)
        thread.start()
        spy = None

        def start_spy() -> subprocess.Popen[bytes]:
            # Samples the thread holding the GIL over one phase (collapsed stacks).
            return subprocess.Popen(
                [
                    str(BIN / "py-spy"),
                    "record",
                    "--pid",
                    str(collector.pid),
                    "--format",
                    "raw",
                    "--duration",
                    str(int(args.seconds)),
                    "--rate",
                    "200",
                    "--nonblocking",
                    "--gil",
                    "-o",
                    f"{args.py_spy}-{n}.txt",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        if args.py_spy and args.py_spy_phase == 1:
            spy = start_spy()
        # Phase 1: ingest only.
        cpu0 = cpu_seconds(proc)
        time.sleep(args.seconds)
        cpu1 = cpu_seconds(proc)
        mid_wall = time.time()
        if args.py_spy and args.py_spy_phase == 2:
            spy = start_spy()
        # Phase 2: ingest while scraping.
        scrapes: list[tuple[float, float, int]] = []  # (started wall, seconds, bytes)
        while time.time() < begin_wall + duration - args.scrape_every / 2:
            started = time.time()
            seconds, size = scrape(f"{http}/metrics")
            scrapes.append((started, seconds, size))
            time.sleep(max(0.0, args.scrape_every - seconds))
        cpu2 = cpu_seconds(proc)
        end_wall = time.time()
        results = []
        for g in generators:
            out, _ = g.communicate(timeout=300)
            results.append(json.loads(out.splitlines()[-1]))
        thread.join(120)
        if spy is not None:
            spy.wait(60)
        rss_end = rss_bytes(proc)
        rss_end_parts = rss_by_process(proc)
        load_after = os.getloadavg()
    finally:
        collector.terminate()
        collector.wait(30)
    samples = [s for r in results for s in r["samples"]]
    errors: dict[str, int] = {}
    for r in results:
        for code, count in r["errors"].items():
            errors[code] = errors.get(code, 0) + count
    idle = [lat for t, lat in samples if begin_wall <= t < mid_wall]
    windows = [(t, t + s) for t, s, _ in scrapes]
    during = [lat for t, lat in samples if any(a <= t <= b for a, b in windows)]
    accepted_idle = len(idle)
    accepted_scrape = len([1 for t, _ in samples if mid_wall <= t < end_wall])
    return {
        "nodes": n,
        "accepted_per_s_ingest": accepted_idle / args.seconds,
        "accepted_per_cpu_s_ingest": accepted_idle / max(cpu1 - cpu0, 1e-9),
        "collector_cpu_share_ingest": (cpu1 - cpu0) / args.seconds,
        "accepted_per_cpu_s_scraping": accepted_scrape / max(cpu2 - cpu1, 1e-9),
        "collector_cpu_share_scraping": (cpu2 - cpu1) / max(end_wall - mid_wall, 1e-9),
        "report_p50_ms_ingest": 1000 * percentile(idle, 0.5),
        "report_p99_ms_ingest": 1000 * percentile(idle, 0.99),
        "report_p50_ms_scraping": 1000 * percentile(during, 0.5),
        "report_p99_ms_scraping": 1000 * percentile(during, 0.99),
        "reports_during_scrapes": len(during),
        "metrics_cold_s": scrapes[0][1] if scrapes else float("nan"),
        "metrics_median_s": percentile([s for _, s, _ in scrapes], 0.5),
        "metrics_bytes": scrapes[-1][2] if scrapes else 0,
        "scrapes": len(scrapes),
        "rss_idle_mib": rss_idle / 2**20,
        "rss_idle_by_process_mib": rss_idle_parts,
        "rss_end_mib": rss_end / 2**20,
        "rss_per_node_kib": (rss_end - rss_idle) / n / 1024,
        "rss_end_by_process_mib": rss_end_parts,
        "rss_per_node_kib_after_fill": (rss_loaded - rss_idle) / n / 1024,
        "verdict_latency_p50_s": percentile(verdicts, 0.5),
        "verdict_latency_max_s": max(verdicts) if verdicts else float("nan"),
        "verdict_samples": len(verdicts),
        "verdict_prober_errors": verdict_errors,
        "errors": errors,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }


def rejections(http: str) -> dict[str, float]:
    """The collector's own refusals since it started, by reason (from /metrics)."""
    request = urllib.request.Request(f"{http}/metrics", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=120) as response:
        text = gzip.decompress(response.read()).decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("preflight_reports_rejected_total{"):
            labels, value = line.rsplit(" ", 1)
            if float(value):
                out[labels.split('reason="', 1)[1].split('"', 1)[0]] = float(value)
    return out


def measure_saturated(n: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The --saturate phase: N nodes' reports as fast as the collector answers them."""
    # Still checked per report, never binding: 1,000 nodes at ~3,000 reports/s is 3 a node.
    collector, grpc_port, http = start_collector(
        n, args, tmp, {"min_report_interval": 0.001, "report_burst": 100}
    )
    try:
        proc = psutil.Process(collector.pid)
        time.sleep(3.0)  # the children import after the collector listens
        share = -(-n // args.workers)
        specs: list[dict[str, Any]] = []
        for w in range(args.workers):
            spec = {
                "address": f"127.0.0.1:{grpc_port}",
                "first": w * share,
                "last": min(n, (w + 1) * share),
                "duration": args.seconds,
                "change_rate": args.change_rate,
                "inflight": args.inflight,
            }
            specs.append(spec)
        generators = start_generators("--saturate-generator", specs)
        # Scraped like a monitored collector (--saturate-scrape-every): two scrapes before
        # the phase, so the collector knows the interval its /metrics text is read at.
        scrapes: list[tuple[float, float]] = []  # (started wall, seconds)
        scraping = threading.Event()

        def scraper() -> None:
            while not scraping.wait(0 if not scrapes else args.saturate_scrape_every):
                started = time.time()
                seconds, _ = scrape(f"{http}/metrics")
                scrapes.append((started, seconds))

        scrape_thread = None
        if args.saturate_scrape_every > 0:
            scrape_thread = threading.Thread(target=scraper)
            scrape_thread.start()
            while len(scrapes) < 2:
                time.sleep(0.2)
        spy = None
        if args.py_spy:
            spy = subprocess.Popen(
                [
                    *(str(BIN / "py-spy"), "record", "--pid", str(collector.pid)),
                    *("--format", "raw", "--duration", str(int(args.seconds))),
                    *("--rate", "200", "--nonblocking", "--gil", "--threads"),
                    *("-o", f"{args.py_spy}-{n}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        load_before = os.getloadavg()
        for g in generators:
            assert g.stdin is not None
            g.stdin.write("go\n")
            g.stdin.flush()
        begin = time.time()
        loaders = [psutil.Process(g.pid) for g in generators]
        cpu0, load0 = cpu_by_process(proc), sum(cpu_seconds(p) for p in loaders)
        main0 = proc.cpu_times()
        time.sleep(args.seconds)
        cpu1, load1 = cpu_by_process(proc), sum(cpu_seconds(p) for p in loaders)
        main1 = proc.cpu_times()
        load_after = os.getloadavg()
        scraping.set()
        if scrape_thread is not None:
            scrape_thread.join(300)
        results = []
        for g in generators:
            out, _err = g.communicate(timeout=300)
            results.append(json.loads(out.splitlines()[-1]))
        if spy is not None:
            spy.wait(60)
        refused = rejections(http)
    finally:
        collector.terminate()
        collector.wait(30)
    # What the collector warned about (a judging child that did not answer, say).
    logged = (tmp / f"collector-{n}.log").read_text(errors="replace").splitlines()
    warnings = [line[:200] for line in logged if "WARNING" in line or "ERROR" in line]
    latencies = [lat for r in results for lat in r["latencies"]]
    errors: dict[str, int] = {}
    for r in results:
        for code, count in r["errors"].items():
            errors[code] = errors.get(code, 0) + count
    accepted = sum(r["accepted"] for r in results)
    cpu = {k: v - cpu0.get(k, 0.0) for k, v in cpu1.items()}
    total = sum(cpu.values())
    return {
        "nodes": n,
        "mode": "saturate",
        "inflight": args.inflight * args.workers,
        "accepted_per_s": accepted / args.seconds,
        "collector_cores": total / args.seconds,
        "collector_cores_by_process": {k: round(v / args.seconds, 3) for k, v in cpu.items()},
        "accepted_per_cpu_s": accepted / max(total, 1e-9),
        "accepted_per_cpu_s_main_process": accepted / max(cpu.get("collector", 0.0), 1e-9),
        # Kernel time of the main process (thread hand-offs, the GIL's futexes, sockets).
        "main_process_system_share": (main1.system - main0.system)
        / max(main1.user + main1.system - main0.user - main0.system, 1e-9),
        # The load generators share the machine: on 2 vCPUs they take about the other core.
        "generator_cores": (load1 - load0) / args.seconds,
        "report_p50_ms": 1000 * percentile(latencies, 0.5),
        "report_p99_ms": 1000 * percentile(latencies, 0.99),
        "scrape_every_s": args.saturate_scrape_every,
        "scrapes_in_phase": len([1 for t, _ in scrapes if t >= begin]),
        "scrape_median_s": percentile([d for t, d in scrapes if t >= begin], 0.5),
        "errors": errors,
        "rejected_since_start": refused,
        "collector_warnings": len(warnings),
        "collector_warnings_first": warnings[:3],
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }


class _StandInContext:
    """What the Report handler reads of a gRPC call, for the in-process handler stage."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def time_remaining(self) -> float:
        return 60.0

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise RuntimeError(f"{code}: {details}")


def handler_cost(n: int, rounds: int = 7) -> dict[str, float]:
    """CPU microseconds per report of the Report handler's own work, in process, one
    thread: authenticate, decode, rate limit, validate, store, the ack serialized as gRPC
    would (the gRPC call itself not included). N nodes of the bench's shape, each round
    one new report per node (next sequence, current sent_at); min and median of rounds."""
    from collector.config import CollectorConfig, LimitsConfig, ListenConfig
    from collector.service import CollectorService

    config = CollectorConfig(
        listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"),
        limits=LimitsConfig(
            max_nodes=n + 10,
            max_state_bytes=1 << 30,
            min_report_interval=0.001,
            report_burst=100,
        ),
    )
    servicer = CollectorService(config).servicer
    handler = servicer.handler()
    [method] = [
        h
        for h in [handler.service(_CallDetails("/preflight.v1.Collector/Report"))]
        if h is not None
    ]
    serialize = method.response_serializer or (lambda answer: answer)
    messages = [make_report(node_name(i), node_name(i + 1), 0, frozenset()) for i in range(n)]
    context = _StandInContext()
    per_round = []
    for _ in range(rounds + 1):
        raws = []
        for m in messages:
            m.sequence += 1
            m.sent_at.FromNanoseconds(time.time_ns())
            raws.append(m.SerializeToString())
        started = time.process_time()
        for raw in raws:
            serialize(method.stream_unary(iter((raw,)), context))
        per_round.append(1e6 * (time.process_time() - started) / n)
    timed = sorted(per_round[1:])  # the first round fills the state
    import collector

    return {
        "handler_us_min": timed[0],
        "handler_us_median": timed[len(timed) // 2],
        "collector_from": str(Path(collector.__file__).parent),
    }


class _CallDetails(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def stages(n: int) -> dict[str, Any]:
    """In-process costs of each stage of one report's way, and of the per-second work,
    for N nodes of the benchmark's shape (best of several runs; one CPU)."""
    from collector.config import CollectorConfig, LimitsConfig, ListenConfig
    from collector.rules.model import Evidence
    from collector.service import CollectorService
    from collector.validation import validate
    from tests.support.validation_reference import validate as validate_reference

    def best(run: Any, repeat: int = 5) -> float:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        return min(times)

    config = CollectorConfig(
        listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"),
        heartbeat_interval=10.0,
        limits=LimitsConfig(max_nodes=n + 10, max_state_bytes=1 << 30),
    )
    service = CollectorService(config)
    now = time.time()
    raws = [
        make_report(node_name(i), node_name(i + 1), 1, frozenset()).SerializeToString()
        for i in range(n)
    ]
    sample = raws[:500]
    limits = config.limits
    row: dict[str, Any] = {"nodes": n, "report_bytes": len(raws[0])}
    row.update(handler_cost(min(n, 2000)))
    decoded = [pb.NodeReport.FromString(r) for r in sample]
    row["decode_us"] = 1e6 * best(lambda: [pb.NodeReport.FromString(r) for r in sample]) / 500
    row["validate_us"] = 1e6 * best(lambda: [validate(m, limits, now) for m in decoded]) / 500
    row["validate_reference_us"] = (
        1e6 * best(lambda: [validate_reference(m, limits, now) for m in decoded]) / 500
    )
    started = time.perf_counter()
    for r in raws:
        service.state.accept(pb.NodeReport.FromString(r), now, size=len(r))
    row["decode_validate_store_us"] = 1e6 * (time.perf_counter() - started) / n
    row["snapshot_ms"] = 1e3 * best(lambda: service.state.snapshot(now))
    view = Evidence(
        state=service.state.snapshot(now),
        profile=service.profile,
        now=now,
        kube=service.kube.latest(),
        cluster_domain=config.cluster_domain,
    )
    row["judge_first_ms"] = 1e3 * best(lambda: service._judge(view), 1)
    row["judge_warm_ms"] = 1e3 * best(lambda: service._judge(view))
    published = service.current_view()
    row["metrics_cold_s"] = best(lambda: type(service.exposition)().render(published), 2)
    service.exposition.render(published)
    row["metrics_warm_gzip_s"] = best(lambda: service.exposition.render_gzip(published))
    body, size = service.exposition.render_gzip(published)
    row["metrics_gzip_bytes"], row["metrics_text_bytes"] = len(body), size
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument("--heartbeat", type=float, default=10.0, help="compressed heartbeat")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--change-rate", type=float, default=0.01, help="nodes changing per s")
    parser.add_argument("--scrape-every", type=float, default=5.0)
    parser.add_argument(
        "--py-spy", metavar="PREFIX", help="record the collector with py-spy to PREFIX-N.txt"
    )
    parser.add_argument(
        "--py-spy-phase", type=int, choices=(1, 2), default=1, help="the phase py-spy records"
    )
    parser.add_argument(
        "--collector-source", metavar="DIR", help="run the collector of another source tree"
    )
    parser.add_argument(
        "--stages", action="store_true", help="in-process cost of each stage, no processes"
    )
    parser.add_argument(
        "--saturate",
        action="store_true",
        help="capacity: reports as fast as the collector answers, instead of the two phases",
    )
    parser.add_argument(
        "--inflight", type=int, default=32, help="--saturate: calls in flight per generator"
    )
    parser.add_argument(
        "--saturate-scrape-every",
        type=float,
        default=0.0,
        help="--saturate: scrape /metrics this often (s; 0: never), as Prometheus would",
    )
    parser.add_argument(
        "--handler-stage",
        action="store_true",
        help="only the in-process cost of the Report handler (of --stages), no processes",
    )
    parser.add_argument("--generator", help=argparse.SUPPRESS)
    parser.add_argument("--saturate-generator", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stages or args.handler_stage:
        if args.collector_source:
            # That tree's collector in this process (its stages, for before/after).
            sys.path.insert(0, str(Path(args.collector_source).resolve()))
        for n in (int(s) for s in args.sizes.split(",")):
            row = {"nodes": n, **handler_cost(n)} if args.handler_stage else stages(n)
            print(json.dumps(row), flush=True)
        return
    if args.generator:
        print(json.dumps(asyncio.run(generate(json.loads(args.generator)))), flush=True)
        return
    if args.saturate_generator:
        print(json.dumps(asyncio.run(saturate(json.loads(args.saturate_generator)))), flush=True)
        return
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            row = (measure_saturated if args.saturate else measure)(n, args, Path(tmp))
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
