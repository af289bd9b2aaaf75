"""Benchmark: one full agent probe cycle vs node_exporter serving one scrape.

The agent side runs in a fresh child process (so its resident memory is its own): the
hardware and GPU probes plus MountProber on two temporary directories with writes and
markers, exactly what one agent cycle does apart from egress. Figures: CPU time of the
first cycle (includes lazy imports such as pynvml), mean CPU of the following cycles, and
the process's peak resident set size (Python interpreter included), measured both with
the probe modules only and after importing the whole agent (runner, gRPC client).

node_exporter (Debian ``prometheus-node-exporter``, default collectors) is started on
127.0.0.1 with a free port; figures: CPU time for its first scrape and the mean of the
following scrapes (from its threads' schedstat), peak RSS (VmHWM).

Run: .venv/bin/python bench/bench_agent_cycle.py [--cycles 20] [--write-docs]
     .venv/bin/python bench/bench_agent_cycle.py --footprint 60   (memory: import cost per
     dependency; a live agent with the default probes, targets failing, collector port
     closed; a live agent whose targets succeed (a local TLS origin) reporting to a real
     collector; node_exporter, blackbox_exporter -- all in one run)
Prints the figures; --write-docs replaces the "Agent cycle" section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "performance.md"
SECTION = "## Agent cycle"


def _child(cycles: int) -> dict[str, Any]:
    """One agent-cycle measurement, in this (fresh) process."""
    from agent.config import MountsConfig, SharedVolume
    from agent.hostfs import HostFS
    from agent.probes.gpu import collect_gpus
    from agent.probes.hardware import collect_hardware
    from agent.probes.mounts import MountProber

    async def cycle(host: HostFS, prober: MountProber) -> None:
        # As the runner does: hardware and GPUs in threads, mounts on the loop, together.
        await asyncio.gather(
            asyncio.to_thread(collect_hardware, host),
            asyncio.to_thread(collect_gpus, host),
            prober.probe(),
        )

    async def main() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="pf-bench-") as tmp:
            volumes = []
            for name in ("a", "b"):
                Path(tmp, name).mkdir()
                volumes.append(SharedVolume(path=str(Path(tmp, name)), write_expected=True))
            host = HostFS(Path("/"))
            prober = MountProber(host, "bench-node", MountsConfig(volumes=tuple(volumes)))
            t0 = time.process_time()
            w0 = time.perf_counter()
            await cycle(host, prober)
            first_cpu = time.process_time() - t0
            first_wall = time.perf_counter() - w0
            t1 = time.process_time()
            w1 = time.perf_counter()
            for _ in range(cycles):
                await cycle(host, prober)
            steady_cpu = (time.process_time() - t1) / cycles
            steady_wall = (time.perf_counter() - w1) / cycles
            await prober.close()
        return {
            "first_cpu_s": first_cpu,
            "first_wall_s": first_wall,
            "steady_cpu_s": steady_cpu,
            "steady_wall_s": steady_wall,
        }

    result = asyncio.run(main())
    result["rss_probes_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # gRPC and the wire code: the whole agent's footprint.
    for module in ("agent.client", "agent.runner"):
        importlib.import_module(module)

    result["rss_full_agent_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["process_cpu_s"] = time.process_time()
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc_cpu(pid: int) -> float:
    """CPU seconds of a process: the sum of its threads' schedstat run time (ns precision;
    /proc/<pid>/stat counts 10 ms ticks, too coarse for one scrape). Go's threads live on,
    so none of node_exporter's time is lost with an exited thread."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def _proc_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _node_exporter(scrapes: int) -> dict[str, Any]:
    binary = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if binary is None:
        raise SystemExit("prometheus-node-exporter is not installed (Debian package)")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        end = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > end or proc.poll() is not None:
                    raise SystemExit("node_exporter did not start") from None
                time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/metrics"
        startup_cpu = _proc_cpu(proc.pid)
        w0 = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as response:
            body = response.read()
        first_wall = time.perf_counter() - w0
        first_cpu = _proc_cpu(proc.pid) - startup_cpu
        c1 = _proc_cpu(proc.pid)
        w1 = time.perf_counter()
        for _ in range(scrapes):
            with urllib.request.urlopen(url, timeout=30) as response:
                response.read()
        steady_cpu = (_proc_cpu(proc.pid) - c1) / scrapes
        steady_wall = (time.perf_counter() - w1) / scrapes
        return {
            "version": subprocess.run([binary, "--version"], capture_output=True, text=True)
            .stdout.split()[2]
            .rstrip(","),
            "startup_cpu_s": startup_cpu,
            "first_cpu_s": first_cpu,
            "first_wall_s": first_wall,
            "steady_cpu_s": steady_cpu,
            "steady_wall_s": steady_wall,
            "rss_kib": _proc_hwm_kib(proc.pid),
            "series": sum(1 for line in body.decode().splitlines() if line and line[0] != "#"),
        }
    finally:
        proc.terminate()
        proc.wait(10)


def _machine() -> str:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{model or platform.processor()}, {os.cpu_count()} logical CPUs, {mem_gib:.0f} GiB, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def _table(agent: dict[str, Any], ne: dict[str, Any], cycles: int) -> str:
    ms = 1000.0
    rows = [
        ("", "agent cycle (hw + GPU + 2 mounts)", "node_exporter scrape"),
        ("---", "---", "---"),
        (
            "CPU, first",
            f"{agent['first_cpu_s'] * ms:.1f} ms",
            f"{ne['first_cpu_s'] * ms:.1f} ms",
        ),
        (
            f"CPU, mean of next {cycles}",
            f"{agent['steady_cpu_s'] * ms:.1f} ms",
            f"{ne['steady_cpu_s'] * ms:.1f} ms",
        ),
        (
            "wall, mean",
            f"{agent['steady_wall_s'] * ms:.1f} ms",
            f"{ne['steady_wall_s'] * ms:.1f} ms",
        ),
        (
            "peak RSS",
            f"{agent['rss_probes_kib'] / 1024:.1f} MiB (probes) / "
            f"{agent['rss_full_agent_kib'] / 1024:.1f} MiB (whole agent imported)",
            f"{ne['rss_kib'] / 1024:.1f} MiB",
        ),
        (
            "start-up CPU",
            f"{agent['process_cpu_s'] * ms:.0f} ms (interpreter, imports, all cycles)",
            f"{ne['startup_cpu_s'] * ms:.0f} ms (until listening)",
        ),
    ]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def _write_docs(text: str) -> None:
    existing = DOCS.read_text() if DOCS.exists() else "# Performance (measured)\n"
    start = existing.find(SECTION + "\n")
    if start == -1:
        updated = existing.rstrip("\n") + "\n\n" + text
    else:
        nxt = existing.find("\n## ", start + len(SECTION))
        updated = existing[:start] + text + ("" if nxt == -1 else existing[nxt:])
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(updated.rstrip("\n") + "\n")


# What each dependency costs in resident memory, imported alone into a bare interpreter.
IMPORTS = {
    "asyncio + ssl (what any client needs)": "import asyncio, ssl",
    # Measured over "asyncio + ssl" too (the last column says so): what the client adds.
    "h2 (after asyncio + ssl)": "import asyncio, ssl, h2.connection",
    "agent.wire (the agent's gRPC client, h2)": "import asyncio, ssl, agent.wire",
    "grpc": "import grpc, grpc.aio",
    "protobuf + generated code": "import preflight.v1.report_pb2",
    "pydantic": "import pydantic",
    "preflight.strict (config and profiles without pydantic)": "import preflight.strict",
    "cryptography (x509)": "from cryptography import x509",
    "dnspython (asyncresolver)": "import dns.asyncresolver",
    "h11": "import h11",
    "psutil": "import psutil",
    "PyYAML": "import yaml",
    "the agent at start (this tree)": "import agent.cli, agent.runner, agent.fanout, agent.kinds",
    "the agent at start + cryptography + dnspython": (
        "import agent.cli, agent.runner, agent.fanout, agent.kinds;"
        "from cryptography import x509; import dns.asyncresolver"
    ),
}


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _import_cost(code: str) -> int:
    """VmRSS (KiB) of a fresh interpreter after `code` (run from the repository root)."""
    script = f"{code}\nimport os\nprint(open('/proc/self/status').read())"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    for line in out.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit("no VmRSS")


def _sample_agent(proc: subprocess.Popen[bytes], seconds: float) -> dict[str, Any]:
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(5)
        if proc.poll() is not None:
            raise SystemExit(f"the agent exited with {proc.returncode}")
        samples.append(_rss_kib(proc.pid))
    maps = Path(f"/proc/{proc.pid}/maps").read_text()
    return {
        "rss_kib": samples[-1],
        "rss_first_kib": samples[0],
        "hwm_kib": _proc_hwm_kib(proc.pid),
        "cryptography_loaded": "cryptography" in maps,
        "grpc_loaded": "cygrpc" in maps,
        "pydantic_loaded": "pydantic_core" in maps,
    }


def _live_agent(seconds: float) -> dict[str, Any]:
    """`preflight-agent` with the default probes and profile, collector port closed."""
    port = _free_port()  # nothing listens: the agent keeps one pending report
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "preflight-agent"),
            "--collector",
            f"127.0.0.1:{port}",
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return _sample_agent(proc, seconds)
    finally:
        proc.terminate()
        proc.wait(10)


def _local_origin(tmp: Path) -> tuple[Any, int, Path]:
    """A real HTTPS origin on 127.0.0.1 (private CA), answering every GET with 200."""
    import http.server
    import ssl
    import threading

    import trustme

    ca = trustme.CA()
    ca_file = tmp / "ca.pem"
    ca_file.write_bytes(ca.cert_pem.bytes())
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, int(httpd.server_address[1]), ca_file


def _live_agent_local(seconds: float, *, trusted: bool = True) -> dict[str, Any]:
    """The agent probing a local TLS origin, delivering to a real collector.

    The profile is runai-2020 with its six targets pointed at the local origin (same
    names and paths), so the probes do what they do on a healthy node: resolve, connect,
    verified TLS, one HTTP exchange, and the reports are acknowledged. Not `trusted`
    (the origin's CA is not given to the agent): every target fails `tls_untrusted` and
    the agent parses each presented certificate, as behind an intercepting proxy.
    """
    import yaml

    tmp = Path(tempfile.mkdtemp(prefix="pf-footprint-"))
    httpd, port, ca_file = _local_origin(tmp)
    profile = yaml.safe_load(
        (REPO / "proto" / "preflight" / "profiles" / "runai-2020.yaml").read_text()
    )
    profile["name"] = "runai-2020-local"
    for target in profile["egress"]["targets"]:
        target["host"], target["port"] = "localhost", port
        target.pop("expect_status", None)  # the origin answers 200 to every path
        target.pop("require_header_for", None)
    (tmp / "profile.yaml").write_text(yaml.safe_dump(profile))
    grpc_port, http_port = _free_port(), _free_port()
    (tmp / "collector.yaml").write_text(
        yaml.safe_dump(
            {
                "listen": {"grpc": f"127.0.0.1:{grpc_port}", "http": f"127.0.0.1:{http_port}"},
                "kubernetes": {"mode": "none"},
                "profile": str(tmp / "profile.yaml"),
            }
        )
    )
    (tmp / "agent.yaml").write_text(
        yaml.safe_dump(
            {
                "profile": str(tmp / "profile.yaml"),
                # Not trusted: the system store only, which does not know the private CA.
                "egress": {"ca_file": str(ca_file)} if trusted else {},
            }
        )
    )
    binary = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    collector = subprocess.Popen(
        [str(binary / "preflight-collector"), "--config", str(tmp / "collector.yaml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    agent = None
    try:
        agent = subprocess.Popen(
            [
                str(binary / "preflight-agent"),
                "--config", str(tmp / "agent.yaml"),
                "--collector", f"127.0.0.1:{grpc_port}",
                "--log-level", "WARNING",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )  # fmt: skip
        result = _sample_agent(agent, seconds)
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as r:
            metrics = r.read().decode()
        result["targets_up"] = sum(
            1
            for line in metrics.splitlines()
            if line.startswith("preflight_egress_up{") and line.endswith(" 1.0")
        )
        return result
    finally:
        for proc in (agent, collector):
            if proc is not None:
                proc.terminate()
                proc.wait(10)
        httpd.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def _live_row(label: str, live: dict[str, Any]) -> str:
    loaded = [
        name
        for name, key in (
            ("grpcio", "grpc_loaded"),
            ("pydantic", "pydantic_loaded"),
            ("cryptography", "cryptography_loaded"),
        )
        if live[key]
    ]
    extra = f"; {live['targets_up']} targets up at the collector" if "targets_up" in live else ""
    return (
        f"| {label} | {live['rss_kib'] / 1024:.1f} MiB (first sample "
        f"{live['rss_first_kib'] / 1024:.1f}, peak {live['hwm_kib'] / 1024:.1f}; mapped: "
        f"{', '.join(loaded) or 'none of grpcio, pydantic, cryptography'}{extra}) | |"
    )


def _blackbox_rss() -> int:
    binary = shutil.which("prometheus-blackbox-exporter") or shutil.which("blackbox_exporter")
    if binary is None:
        raise SystemExit("prometheus-blackbox-exporter is not installed (Debian package)")
    port = _free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as config:
        config.write("modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n")
    proc = subprocess.Popen(
        [binary, f"--config.file={config.name}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        end = time.monotonic() + 20
        while True:
            try:
                url = f"http://127.0.0.1:{port}/probe?module=http_2xx&target=http://127.0.0.1:1/"
                urllib.request.urlopen(url, timeout=10).read()
                break
            except OSError:
                if time.monotonic() > end or proc.poll() is not None:
                    raise SystemExit("blackbox_exporter did not start") from None
                time.sleep(0.1)
        return _rss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
        os.unlink(config.name)


def footprint(seconds: float) -> str:
    """Import cost per dependency, the live agent, and both exporters, in one run."""
    bare = _import_cost("pass")
    rows = [f"| bare interpreter | {bare / 1024:.1f} MiB | |"]
    client_base = None
    for name, code in IMPORTS.items():
        kib = _import_cost(code)
        over = f"+{(kib - bare) / 1024:.1f} MiB"
        if name.startswith("asyncio + ssl"):
            client_base = kib
        elif code.startswith("import asyncio, ssl,") and client_base is not None:
            over += f" (+{(kib - client_base) / 1024:.1f} over asyncio + ssl)"
        rows.append(f"| {name} | {kib / 1024:.1f} MiB | {over} |")
    live = _live_agent(seconds)
    healthy = _live_agent_local(seconds)
    untrusted = _live_agent_local(seconds, trusted=False)
    ne = _node_exporter(3)
    bb = _blackbox_rss()
    return "\n".join(
        [
            "| process / import | VmRSS | over the bare interpreter |",
            "| --- | --- | --- |",
            *rows,
            _live_row(
                f"live `preflight-agent`, default probes, targets failing, collector port "
                f"closed, after {seconds:g} s",
                live,
            ),
            _live_row(
                f"live `preflight-agent`, every target up (local TLS origin), reporting to a "
                f"collector, after {seconds:g} s",
                healthy,
            ),
            _live_row(
                f"live `preflight-agent`, every target `tls_untrusted` (local origin, its CA "
                f"not trusted), reporting to a collector, after {seconds:g} s",
                untrusted,
            ),
            f"| node_exporter after 4 scrapes | {ne['rss_kib'] / 1024:.1f} MiB (peak) | |",
            f"| blackbox_exporter after one probe | {bb / 1024:.1f} MiB | |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--footprint",
        type=float,
        metavar="SECONDS",
        help="instead: import cost per dependency, a live agent for SECONDS, both exporters",
    )
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.cycles)))
        return
    if args.footprint:
        print(f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {_machine()}")
        print(f"# load average {os.getloadavg()}")
        print(footprint(args.footprint))
        return

    child = subprocess.run(
        [sys.executable, __file__, "--child", "--cycles", str(args.cycles)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    agent = json.loads(child.stdout.strip().splitlines()[-1])
    ne = _node_exporter(args.cycles)
    table = _table(agent, ne, args.cycles)
    print(table)
    print(f"node_exporter {ne['version']}, {ne['series']} series per scrape")
    if args.write_docs:
        today = datetime.date.today().isoformat()
        _write_docs(
            f"{SECTION}\n\n"
            f"Measured {today} on {_machine()} (shared with other jobs: figures are noisy), "
            f"by `bench/bench_agent_cycle.py --cycles {args.cycles}`, both sides in one run.\n"
            "The agent cycle is collect_hardware + collect_gpus (no NVIDIA driver here: "
            "NVML reports not_installed) + MountProber on two local temporary directories "
            "with the write round trip, marker write and peer read; egress is not included. "
            f"node_exporter is {ne['version']} (Debian) with its default collectors "
            f"({ne['series']} series per scrape).\n\n"
            f"{table}\n\n"
            "CPU: the agent's from time.process_time() around the cycle, node_exporter's "
            "from its threads' /proc/<pid>/task/*/schedstat before and after the scrape. "
            "RSS is the peak resident set (ru_maxrss / VmHWM); the agent's includes the "
            "Python interpreter. The first agent cycle pays lazy imports (pynvml).\n"
        )
        print(f"wrote {DOCS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
