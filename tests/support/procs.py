"""Real processes for end-to-end tests: local HTTPS servers with a private CA, the commands."""

from __future__ import annotations

import http.server
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import trustme
import yaml

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
