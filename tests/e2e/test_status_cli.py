"""`preflight status` as a real process against a real `preflight-collector` process.

The collector reads kmock through a kubeconfig and receives reports over real gRPC;
`preflight status` then turns its /api/v1/verdicts into the table or JSON and the exit
code: 0 passing, 1 warning, 2 failing, 3 unknown (standalone) or unreachable, and
--wait returns once a cluster that was not ready becomes ready.
"""

# ruff: noqa: F811 — pytest injects the imported `api` fixture by parameter name

from __future__ import annotations

import asyncio
import http.server
import ssl
import threading
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import grpc.aio
import pytest
import trustme
import yaml

from preflight.v1 import report_pb2 as pb
from preflight.v1 import report_pb2_grpc as pb_grpc
from tests.support.builders import report
from tests.support.cli_cluster import (
    SHARE,
    Ran,
    cli_env,
    node_list,
    run_preflight,
)
from tests.support.kube import FakeApi, api, version_info  # noqa: F401
from tests.support.kube_api import write_kubeconfig
from tests.support.procs import BIN
from tests.support.servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

NODES = {"gpu-a": 8, "gpu-b": 4}


def node_report(name: str, sequence: int, down: dict[str, str] | None = None) -> pb.NodeReport:
    message = report(name, pci=NODES[name], driver=NODES[name], down=down)
    message.sequence = sequence
    message.mounts.add(
        path=SHARE,
        state=pb.MOUNT_STATE_MOUNTED,
        fs_type="nfs4",
        source="nas01:/export/runai",
        network_filesystem=True,
        write_check=pb.WRITE_CHECK_NOT_EXPECTED,
    )
    return message


class Collector:
    def __init__(self, tmp: Path, kubeconfig: Path | None) -> None:
        self.tmp = tmp
        self.grpc_port, self.http_port = free_port(), free_port()
        kubernetes = (
            {"mode": "kubeconfig", "kubeconfig": str(kubeconfig), "refresh_interval": "1s"}
            if kubeconfig
            else {"mode": "none"}
        )
        self.config = tmp / "collector.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "listen": {
                        "grpc": f"127.0.0.1:{self.grpc_port}",
                        "http": f"127.0.0.1:{self.http_port}",
                    },
                    "heartbeat_interval": "30s",
                    "kubernetes": kubernetes,
                }
            )
        )
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.process: asyncio.subprocess.Process | None = None
        self.sequence = 0

    async def start(self) -> None:
        log = open(self.tmp / "collector.log", "wb")  # noqa: SIM115 — lives with the process
        self.process = await asyncio.create_subprocess_exec(
            str(BIN / "preflight-collector"), "--config", str(self.config), stdout=log, stderr=log
        )
        deadline = time.monotonic() + 30
        # Both ports: HTTP listens before gRPC does (collector.service.start), and a
        # report sent in between was refused on a loaded machine.
        for port in (self.http_port, self.grpc_port):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, (self.tmp / "collector.log").read_text()
                    await asyncio.sleep(0.1)

    async def send(self, down: dict[str, str] | None = None) -> None:
        self.sequence += 1
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            stub = pb_grpc.CollectorStub(channel)
            for name in NODES:
                await stub.Report(node_report(name, self.sequence, down), timeout=5)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await asyncio.wait_for(self.process.wait(), 15)


async def status(collector: str, *args: str, tmp: Path) -> Ran:
    return await run_preflight("status", "--collector", collector, *args, env=cli_env(tmp))


async def until(collector: Collector, code: int, *args: str, limit: float = 20) -> Ran:
    """`preflight status` until it exits `code` (the collector judges about once a second)."""
    deadline = time.monotonic() + limit
    while True:
        ran = await status(collector.url, *args, tmp=collector.tmp)
        if ran.code == code or time.monotonic() > deadline:
            return ran
        await asyncio.sleep(0.3)


@pytest.fixture
async def kube_collector(api: FakeApi, tmp_path: Path) -> AsyncIterator[Collector]:
    api.nodes = node_list(NODES)
    collector = Collector(tmp_path, write_kubeconfig(tmp_path / "kubeconfig", api.host))
    await collector.start()
    yield collector
    await collector.stop()


async def test_passing_cluster_exit_0_table(kube_collector: Collector) -> None:
    await kube_collector.send()
    ran = await until(kube_collector, 0)
    assert ran.code == 0, ran.stdout + ran.stderr
    assert f"collector {kube_collector.url}" in ran.stdout
    for requirement in ("kubernetes_version", "shared_volume", "agent_coverage", "gpu_nodes"):
        line = next(
            line for line in ran.stdout.splitlines() if line.strip().startswith(requirement)
        )
        assert " PASS " in line, line
    assert "every node reports (2 nodes)" in ran.stdout
    assert "result: PASS (7 pass) · exit 0" in ran.stdout


async def test_warning_cluster_exit_1_json(kube_collector: Collector, api: FakeApi) -> None:
    api.version = version_info("v1.16.15")
    await kube_collector.send()
    ran = await until(kube_collector, 1, "--format", "json")
    assert ran.code == 1, ran.stdout + ran.stderr
    doc = ran.json()
    assert doc["schema"] == "preflight.verdicts/v1" and doc["command"] == "status"
    assert doc["source"] == {"collector": kube_collector.url}
    assert doc["worst"] == "warn" and doc["exit_code"] == 1
    by_id = {r["requirement"]: r for r in doc["requirements"]}
    assert by_id["kubernetes_version"]["status"] == "warn"
    assert "v1.16.15" in by_id["kubernetes_version"]["reason"]
    assert doc["profile"] == "runai-2020"
    assert doc["ready"] == {"install": True, "runtime": True}


async def test_failing_cluster_exit_2(kube_collector: Collector) -> None:
    await kube_collector.send()
    await until(kube_collector, 0)
    # Two failing observations turn the requirement fail (profile hysteresis).
    for _ in range(3):
        await kube_collector.send(down={"quay.io": "proxy_denied"})
        await asyncio.sleep(1.2)
    ran = await until(kube_collector, 2, "--format", "json")
    assert ran.code == 2, ran.stdout
    failing = next(r for r in ran.json()["requirements"] if r["status"] == "fail")
    assert failing["requirement"] == "egress_install"
    assert failing["targets"] == ["quay.io"] and failing["nodes"] == ["gpu-a", "gpu-b"]
    assert "proxy_denied" in failing["reason"]


async def test_wait_returns_when_the_cluster_becomes_ready(kube_collector: Collector) -> None:
    # No report yet: agent_coverage fails. status --wait polls until the agents arrive.
    waiting = asyncio.create_task(
        status(kube_collector.url, "--wait", "40s", tmp=kube_collector.tmp)
    )
    await asyncio.sleep(4)
    assert not waiting.done()
    await kube_collector.send()
    ran = await asyncio.wait_for(waiting, 60)
    assert ran.code == 0, ran.stdout + ran.stderr
    assert "not ready yet" in ran.stderr and "agent_coverage" in ran.stderr


async def test_wait_times_out_with_the_last_answer(kube_collector: Collector) -> None:
    ran = await status(
        kube_collector.url, "--wait", "3s", "--format", "json", tmp=kube_collector.tmp
    )
    assert ran.code in (2, 3), ran.stdout
    assert "not ready within 3s (--wait)" in ran.json()["notes"]


async def test_standalone_collector_is_unknown_exit_3(tmp_path: Path) -> None:
    collector = Collector(tmp_path, kubeconfig=None)
    await collector.start()
    try:
        await collector.send()
        ran = await until(collector, 3)
        assert ran.code == 3, ran.stdout
        assert "standalone: no Kubernetes API configured" in ran.stdout
        assert "result: UNKNOWN" in ran.stdout
    finally:
        await collector.stop()


async def test_unreachable_collector_and_bad_usage_exit_3(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    ran = await status(url, "--format", "json", tmp=tmp_path)
    assert ran.code == 3
    row = ran.json()["requirements"][0]
    assert row["status"] == "unknown" and "collector unreachable" in row["reason"]
    ran = await status(url, "--wait", "soon", tmp=tmp_path)
    assert ran.code == 3 and "expected a duration" in ran.stderr


class AuthenticatingProxy:
    """A real HTTPS reverse proxy (private CA) that forwards only with the right bearer token."""

    def __init__(self, ca: trustme.CA, upstream: str, token: str) -> None:
        self.seen: list[str] = []
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                given = self.headers.get("Authorization", "")
                outer.seen.append(given)
                if given != f"Bearer {token}":
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                plain = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                with plain.open(upstream + self.path, timeout=10) as answer:
                    body = answer.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://localhost:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


async def test_collector_behind_an_https_proxy_with_a_private_ca_and_a_token(
    kube_collector: Collector, tmp_path: Path
) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    token_file = tmp_path / "token"
    token_file.write_text("status-reader-token\n")
    proxy = AuthenticatingProxy(ca, kube_collector.url, "status-reader-token")
    try:
        await kube_collector.send()
        assert (await until(kube_collector, 0)).code == 0
        tmp = kube_collector.tmp
        ran = await status(
            proxy.url, "--ca-file", str(ca_file), "--token-file", str(token_file), tmp=tmp
        )
        assert ran.code == 0, ran.stdout + ran.stderr
        assert "result: PASS" in ran.stdout
        assert proxy.seen[-1] == "Bearer status-reader-token"
        # The system trust store does not know the private CA: unknown, the reason named.
        ran = await status(proxy.url, "--token-file", str(token_file), "--format", "json", tmp=tmp)
        assert ran.code == 3
        assert "CERTIFICATE_VERIFY_FAILED" in ran.json()["requirements"][0]["reason"]
        # Without the token the proxy answers 401: unknown, exit 3, never a pass.
        ran = await status(proxy.url, "--ca-file", str(ca_file), "--format", "json", tmp=tmp)
        assert ran.code == 3
        assert "answered HTTP 401" in ran.json()["requirements"][0]["reason"]
        assert proxy.seen[-1] == ""
    finally:
        proxy.stop()


async def test_token_never_sent_over_plain_http_beyond_loopback(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("secret-token-value")
    # .invalid never resolves: nothing leaves this machine even if the refusal regressed.
    url = "http://collector.invalid:9750"
    ran = await status(url, "--token-file", str(token_file), "--format", "json", tmp=tmp_path)
    assert ran.code == 3
    reason = ran.json()["requirements"][0]["reason"]
    assert "refusing to send the token of --token-file over plain HTTP" in reason
    assert "secret-token-value" not in ran.stdout + ran.stderr
