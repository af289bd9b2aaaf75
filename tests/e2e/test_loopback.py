"""End to end with real processes on loopback: one collector, two agents, local HTTPS targets."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
import yaml

from tests.support.metrics import sample, scrape
from tests.support.procs import (
    BIN,
    HttpsServer,
    LoopbackProcesses,
    start,
    stop,
    wait_for,
    write_collector_config,
)
from tests.support.profiles import local_target, write_profile
from tests.support.servers import free_port

pytestmark = pytest.mark.e2e

HEARTBEAT = 8.0
STALE_AFTER_HEARTBEATS = 2
PROBE_INTERVAL = 0.5
PROBE_TIMEOUT = 1.5
MAX_BACKOFF = 1.0


class Cluster(LoopbackProcesses):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.ca = trustme.CA()
        self.ca_file = tmp / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.servers = {"site-one": HttpsServer(self.ca), "site-two": HttpsServer(self.ca)}
        # The profile lists the local sites: collector and agents probe nothing else.
        self.profile = write_profile(
            tmp / "profile.yaml", [local_target(n, s.port) for n, s in self.servers.items()]
        )
        write_collector_config(
            self.collector_config,
            f"127.0.0.1:{self.grpc_port}",
            f"127.0.0.1:{self.http_port}",
            HEARTBEAT,
            stale_after_heartbeats=STALE_AFTER_HEARTBEATS,
            profile=str(self.profile),
        )
        self.agent_config.write_text(
            yaml.safe_dump(
                {
                    "collector": {
                        "address": f"127.0.0.1:{self.grpc_port}",
                        "max_backoff": f"{MAX_BACKOFF}s",
                    },
                    "profile": str(self.profile),
                    "probe_interval": f"{PROBE_INTERVAL}s",
                    "heartbeat_interval": f"{HEARTBEAT}s",
                    "egress": {
                        "timeout": f"{PROBE_TIMEOUT}s",
                        # Local overrides of the profile's targets: never via a proxy.
                        "targets": [
                            {
                                "name": name,
                                "host": "localhost",
                                "port": server.port,
                                "proxy": "none",
                            }
                            for name, server in self.servers.items()
                        ],
                    },
                }
            )
        )
        self.env = {**os.environ, "SSL_CERT_FILE": str(self.ca_file)}

    def egress_up(self, node: str, target: str) -> float | None:
        return sample(scrape(self.metrics_url), "preflight_egress_up", node=node, target=target)

    def close(self) -> None:
        super().close()
        for server in self.servers.values():
            server.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


@pytest.mark.timeout(180)
def test_two_agents_one_collector_lifecycle(cluster: Cluster) -> None:
    nodes, targets = ("node-1", "node-2"), ("site-one", "site-two")
    cluster.start_collector()
    for node in nodes:
        cluster.start_agent(node)

    def all_up() -> bool:
        return all(cluster.egress_up(n, t) == 1.0 for n in nodes for t in targets)

    wait_for(all_up, 30, "both nodes report every target up")

    # A target's server stops: exactly that target goes down on both nodes, pushed on
    # change (well before the next heartbeat), with the reason of a closed port.
    cluster.servers["site-two"].stop()
    took = wait_for(
        lambda: all(cluster.egress_up(n, "site-two") == 0.0 for n in nodes),
        HEARTBEAT - 1,
        "site-two down on both nodes before a heartbeat",
    )
    print(
        f"target stop seen on both nodes after {took:.2f}s "
        f"(probe interval {PROBE_INTERVAL}s + timeout {PROBE_TIMEOUT}s)"
    )
    metrics = scrape(cluster.metrics_url)
    for node in nodes:
        assert sample(metrics, "preflight_egress_up", node=node, target="site-one") == 1.0
    reasons = {k[1]: v for k, v in metrics.items() if k[0] == "preflight_egress_failure"}
    assert all(dict(labels)["target"] == "site-two" for labels in reasons), reasons
    # The listener is gone, so a settled probe finds the port closed.
    wait_for(
        lambda: all(
            sample(
                scrape(cluster.metrics_url),
                "preflight_egress_failure",
                node=n,
                target="site-two",
                reason="connect_refused",
            )
            == 1.0
            for n in nodes
        ),
        HEARTBEAT - 1,
        "connect_refused reported for site-two",
    )

    # One agent dies: after the staleness window its preflight_agent_up is 0, the other's 1.
    stop(cluster.agents["node-2"])
    window = HEARTBEAT * STALE_AFTER_HEARTBEATS
    wait_for(
        lambda: sample(scrape(cluster.metrics_url), "preflight_agent_up", node="node-2") == 0.0,
        window + 10,
        "node-2 marked down after the staleness window",
    )
    assert sample(scrape(cluster.metrics_url), "preflight_agent_up", node="node-1") == 1.0

    # The collector restarts with empty state: both nodes are back within one heartbeat
    # (plus the agents' reconnect backoff), without restarting the agents.
    cluster.start_agent("node-2")
    wait_for(
        lambda: sample(scrape(cluster.metrics_url), "preflight_agent_up", node="node-2") == 1.0,
        30,
        "node-2 back after its restart",
    )
    assert cluster.collector is not None
    stop(cluster.collector)
    cluster.start_collector()
    took = wait_for(
        lambda: all(
            sample(scrape(cluster.metrics_url), "preflight_agent_up", node=n) == 1.0 for n in nodes
        ),
        HEARTBEAT + MAX_BACKOFF + 5,
        "both nodes back after a collector restart",
    )
    print(f"both nodes back {took:.2f}s after the collector restarted (heartbeat {HEARTBEAT}s)")


def test_once_json_lists_every_default_target() -> None:
    result = subprocess.run(
        [str(BIN / "preflight-agent"), "--once", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    by_target = {e["target"]: e for e in report["egress"]}
    assert set(by_target) == {
        "runai-charts.storage.googleapis.com",
        "hub.docker.com",
        "gcr.io/run-ai-prod",
        "quay.io",
        "prometheus-us-central1.grafana.net",
        "app.run.ai",
    }
    for result_json in by_target.values():
        assert result_json["outcome"] in ("OUTCOME_UP", "OUTCOME_DOWN")
        assert result_json["phases"], "every target reports the phases it reached"
        if result_json["outcome"] == "OUTCOME_DOWN":
            assert result_json["reason"] != "REASON_NONE"
    assert report["hardware"]["logicalCores"] == os.cpu_count()


@pytest.mark.timeout(120)
def test_demo_serves_metrics_for_this_host(tmp_path: Path) -> None:
    import socket

    http_port, grpc_port = free_port(), free_port()
    demo = start(
        "preflight",
        "demo",
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        log=tmp_path / "demo.log",
    )
    try:
        url = f"http://127.0.0.1:{http_port}/metrics"
        host = socket.gethostname()

        def reported() -> bool:
            return sample(scrape(url), "preflight_agent_up", node=host) == 1.0

        wait_for(reported, 60, "the demo's agent reports")
        metrics = scrape(url)
        series = [k for k in metrics if k[0] == "preflight_egress_up"]
        assert len(series) == 6
        for _, labels in series:
            if metrics[("preflight_egress_up", labels)] == 0.0:
                reasons = [
                    k
                    for k in metrics
                    if k[0] == "preflight_egress_failure" and set(labels) <= set(k[1])
                ]
                assert reasons, f"a down target names its reason: {labels}"
    finally:
        stop(demo)
