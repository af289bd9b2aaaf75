"""End to end: a TLS collector, two real agents and impostors, each auth mode with real processes.

The agents see their egress target refused (its port is closed); an impostor claiming
`node-1` would show it reachable. The impostors are refused and counted, and node-1
stays as its own agent reports it: down.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
import yaml

from tests.support.kubeauth import Grant, ThreadedAuthApi, make_token
from tests.support.metrics import sample, scrape
from tests.support.procs import HttpsServer, start, stop, wait_for, write_collector_config
from tests.support.servers import free_port

pytestmark = pytest.mark.e2e

SERVER_NAME = "preflight-collector.preflight.svc"
HEARTBEAT = 5.0
PROBE_INTERVAL = 0.5


class Scenario:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ca = trustme.CA()
        self.ca_file = tmp / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        cert = self.ca.issue_cert(SERVER_NAME)
        self.cert_file, self.key_file = tmp / "tls.crt", tmp / "tls.key"
        self.cert_file.write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
        self.key_file.write_bytes(cert.private_key_pem.bytes())
        # What the impostor's "probe" reaches; the real agents' target port is closed.
        self.live = HttpsServer(self.ca)
        self.closed_port = free_port()
        self.grpc_port, self.http_port = free_port(), free_port()
        self.env = {**os.environ, "SSL_CERT_FILE": str(self.ca_file)}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start_collector(self, **extra: object) -> None:
        config = write_collector_config(
            self.tmp / "collector.yaml",
            f"127.0.0.1:{self.grpc_port}",
            f"127.0.0.1:{self.http_port}",
            HEARTBEAT,
            tls={"cert_file": str(self.cert_file), "key_file": str(self.key_file)},
            **extra,
        )
        self.processes["collector"] = start(
            "preflight-collector", "--config", str(config), log=self.tmp / "collector.log"
        )

    def start_agent(self, name: str, node: str, token: str, target_port: int) -> None:
        token_file = self.tmp / f"{name}.token"
        token_file.write_text(token)
        config = self.tmp / f"{name}.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "collector": {
                        "address": f"127.0.0.1:{self.grpc_port}",
                        "max_backoff": "1s",
                        "tls": {"ca_file": str(self.ca_file), "server_name": SERVER_NAME},
                        "token_file": str(token_file),
                    },
                    "probe_interval": f"{PROBE_INTERVAL}s",
                    "heartbeat_interval": f"{HEARTBEAT}s",
                    "egress": {
                        "timeout": "1.5s",
                        "targets": [
                            {
                                "name": "site",
                                "host": "localhost",
                                "port": target_port,
                                "proxy": "none",
                            }
                        ],
                    },
                }
            )
        )
        self.processes[name] = start(
            "preflight-agent",
            "--config",
            str(config),
            "--node-name",
            node,
            env=self.env,
            log=self.tmp / f"{name}.log",
        )

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return scrape(f"http://127.0.0.1:{self.http_port}/metrics")

    def rejected(self, reason: str) -> float:
        return sample(self.metrics(), "preflight_reports_rejected_total", reason=reason) or 0.0

    def node(self, name: str) -> dict[str, object]:
        url = f"http://127.0.0.1:{self.http_port}/api/v1/nodes/{name}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return dict(json.loads(response.read()))

    def close(self) -> None:
        for process in self.processes.values():
            stop(process)
        self.live.stop()

    def assert_truthful(self, refused: dict[str, str]) -> None:
        """Both nodes report their closed target; every impostor is refused and counted."""
        for node in ("node-1", "node-2"):
            wait_for(
                lambda n=node: (
                    sample(self.metrics(), "preflight_egress_up", node=n, target="site") == 0.0
                ),
                30,
                f"{node} reports its target down",
            )
        for reason in refused.values():
            wait_for(lambda r=reason: self.rejected(r) >= 3, 30, f"impostor refused as {reason}")
        # Several impostor rounds later node-1 is still what its own agent says.
        time.sleep(2 * PROBE_INTERVAL)
        metrics = self.metrics()
        assert sample(metrics, "preflight_egress_up", node="node-1", target="site") == 0.0
        assert sample(metrics, "preflight_agent_up", node="node-1") == 1.0
        names = {
            dict(labels).get("node") for (name, labels) in metrics if name == "preflight_agent_up"
        }
        assert names == {"node-1", "node-2"}
        for name in refused:
            log = (self.tmp / f"{name}.log").read_text()
            assert "UNAUTHENTICATED" in log or "PERMISSION_DENIED" in log, log[-2000:]


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    s = Scenario(tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.mark.timeout(120)
def test_kubernetes_mode_two_agents_and_impostors(scenario: Scenario, tmp_path: Path) -> None:
    double = ThreadedAuthApi()
    with double as threaded:
        kubeconfig = double.kubeconfig(tmp_path / "kubeconfig")
        scenario.start_collector(
            kubernetes={"mode": "kubeconfig", "kubeconfig": str(kubeconfig)},
            auth={"mode": "kubernetes"},
        )
        for node in ("node-1", "node-2"):
            scenario.start_agent(node, node, threaded.issue(node), scenario.closed_port)
        # Stolen-looking: shaped and claimed exactly like node-1's agent token, but not
        # signed by the cluster, so the API refuses it.
        forged = make_token(
            Grant(
                namespace="preflight",
                service_account="preflight-agent",
                pod="preflight-agent-x7k2p",
                pod_uid="0b4bd0c4-7d5e-4c1a-9f6e-3c2b1a0d9e8f",
                node="node-1",
                audiences=("preflight-collector",),
                expires=time.time() + 3600,
            )
        )
        scenario.start_agent("forger", "node-1", forged, scenario.live.port)
        # A real agent token, of node-2, used to speak for node-1.
        scenario.start_agent("neighbour", "node-1", threaded.issue("node-2"), scenario.live.port)
        scenario.assert_truthful({"forger": "unauthenticated", "neighbour": "identity_mismatch"})
        # Every agent token was reviewed once, however many reports followed.
        reviewed = [r["spec"]["token"] for r in threaded.reviews]
        valid = [t for t in reviewed if t in threaded.grants]
        assert len(valid) == len(set(valid)) == 3


@pytest.mark.timeout(120)
def test_token_file_mode_two_agents_and_an_impostor(scenario: Scenario) -> None:
    shared = secrets.token_urlsafe(32)
    token_file = scenario.tmp / "shared.token"
    token_file.write_text(shared + "\n")
    scenario.start_collector(auth={"mode": "token-file", "token_file": str(token_file)})
    for node in ("node-1", "node-2"):
        scenario.start_agent(node, node, shared, scenario.closed_port)
    # Same length and alphabet as the real one, one character off.
    wrong = ("A" if shared[0] != "A" else "B") + shared[1:]
    scenario.start_agent("impostor", "node-1", wrong, scenario.live.port)
    scenario.assert_truthful({"impostor": "unauthenticated"})
    collector_log = (scenario.tmp / "collector.log").read_text()
    assert shared not in collector_log and wrong not in collector_log
