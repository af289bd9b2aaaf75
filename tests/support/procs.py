"""Real processes for end-to-end tests and benches: HTTPS servers with a private CA, the
commands, a collector with its agents on loopback, /proc readings of their memory."""

from __future__ import annotations

import http.server
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import trustme
import yaml

from tests.support.servers import free_port

BIN = Path(sys.executable).parent


class HttpsServer:
    """A real HTTPS origin on 127.0.0.1 answering GET with a fixed status."""

    def __init__(self, ca: trustme.CA, status: int = 200, hostname: str = "localhost") -> None:
        self.status = status
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(hostname, "127.0.0.1").configure_cert(context)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start(
    command: str, *args: str, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 — lives with the process
    return subprocess.Popen([str(BIN / command), *args], env=env, stdout=out, stderr=out)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def wait_for(predicate: Callable[[], bool], limit: float, what: str) -> float:
    """Polls until `predicate` holds; returns the seconds it took."""
    started = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - started
        except OSError:
            pass
        if time.monotonic() - started > limit:
            raise AssertionError(f"not within {limit:g}s: {what}")
        time.sleep(0.1)


def write_collector_config(
    path: Path, grpc: str, http: str, heartbeat: float, **extra: object
) -> Path:
    """A standalone collector's YAML config (no Kubernetes API) at `path`."""
    config = {
        "listen": {"grpc": grpc, "http": http},
        "heartbeat_interval": f"{heartbeat}s",
        "kubernetes": {"mode": "none"},
        **extra,
    }
    path.write_text(yaml.safe_dump(config))
    return path


# A "node" for mount tests: private mount and PID namespaces (so /proc/1/mountinfo is the
# node's own), and the child dies with unshare if the test does.
NODE_NAMESPACE = (
    "unshare",
    "--mount",
    "--pid",
    "--fork",
    "--mount-proc",
    "--propagation",
    "private",
    "--kill-child",
)


def rss_kib(pid: int) -> int:
    """A process's resident memory (VmRSS) in KiB, from /proc."""
    return _status_kib(pid, "VmRSS")


def threads(pid: int) -> int:
    """A process's thread count, from /proc/PID/status."""
    return _status_kib(pid, "Threads")


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


class LoopbackProcesses:
    """One collector and named agents as real processes on loopback, logs under `tmp`.

    Shared by the e2e tests that start, kill and restart them (tests/e2e/test_loopback.py,
    tests/e2e/test_collector_chaos.py) and by bench/bench_chaos.py. A subclass (or the
    caller) writes `collector_config` and `agent_config` before starting anything.
    """

    def __init__(self, tmp: Path, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.env = env
        self.grpc_port, self.http_port = free_port(), free_port()
        self.collector_config = tmp / "collector.yaml"
        self.agent_config = tmp / "agent.yaml"
        self.collector: subprocess.Popen[bytes] | None = None
        self.agents: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/metrics"

    def agent_log(self, node: str) -> str:
        return (self.tmp / f"agent-{node}.log").read_text(errors="replace")

    def start_collector(self) -> None:
        self.collector = start(
            "preflight-collector",
            "--config",
            str(self.collector_config),
            log=self.tmp / "collector.log",
        )

    def start_agent(self, node: str) -> None:
        self.agents[node] = start(
            "preflight-agent",
            "--config",
            str(self.agent_config),
            "--node-name",
            node,
            env=self.env,
            log=self.tmp / f"agent-{node}.log",
        )

    def close(self) -> None:
        for process in [*self.agents.values(), self.collector]:
            if process is not None:
                stop(process)


class CollectorProcess:
    """A standalone `preflight-collector` on loopback (no Kubernetes API), ready when built.

    Shared by the browser tests (tests/support/browser.py) and bench/bench_flood.py; `extra`
    is merged into its YAML config.
    """

    def __init__(self, tmp: Path, log_level: str | None = None, **extra: object) -> None:
        self.grpc_port, self.http_port = free_port(), free_port()
        config = write_collector_config(
            tmp / "collector.yaml",
            f"127.0.0.1:{self.grpc_port}",
            f"127.0.0.1:{self.http_port}",
            30.0,
            **extra,
        )
        level = ("--log-level", log_level) if log_level else ()
        self.process = start(
            "preflight-collector", "--config", str(config), *level, log=tmp / "collector.log"
        )
        self.http = f"http://127.0.0.1:{self.http_port}"
        self.url = self.http + "/"
        wait_for(lambda: self.get("readyz").startswith("ready"), 30, "collector ready")

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return str(response.read().decode())

    def memory(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) in MiB."""
        return rss_kib(self.process.pid) / 1024, _status_kib(self.process.pid, "VmHWM") / 1024

    def close(self) -> None:
        stop(self.process)
