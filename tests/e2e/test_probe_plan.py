"""The probe plan comes from the collector's profile (real processes on loopback).

Two agents without any egress config run against one collector whose profile is a
file listing two local HTTPS sites. The file is then replaced by one listing two
other sites, as a ConfigMap update would: within one heartbeat (plus the collector's
one-second profile poll and one probe cycle) both agents probe exactly the new sites,
report the new plan version, and every series of the old sites is gone from /metrics.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from preflight.plan import plan_from_profile
from preflight.profile import load_profile
from tests.support.metrics import Samples, scrape
from tests.support.procs import HttpsServer, start, stop, wait_for, write_collector_config
from tests.support.profiles import local_target, write_profile
from tests.support.servers import free_port

pytestmark = pytest.mark.e2e

HEARTBEAT = 6.0
PROBE_INTERVAL = 1.0
PROBE_TIMEOUT = 2.0
# The collector looks at its profile file once per evaluation interval (1 s).
PROFILE_POLL = 1.0
NODES = ("node-a", "node-b")
PROXY_VARIABLES = {"https_proxy", "http_proxy", "all_proxy", "no_proxy"}


class PlanCluster:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        ca = trustme.CA()
        self.ca_file = tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.servers = {n: HttpsServer(ca) for n in ("old-one", "old-two", "new-one", "new-two")}
        self.profile = self.write_profile(("old-one", "old-two"))
        grpc_port, self.http_port = free_port(), free_port()
        config = write_collector_config(
            tmp / "collector.yaml",
            f"127.0.0.1:{grpc_port}",
            f"127.0.0.1:{self.http_port}",
            HEARTBEAT,
            profile=str(self.profile),
        )
        # No egress section at all: the agents probe what the collector's plan says.
        agent_config = tmp / "agent.yaml"
        agent_config.write_text(
            yaml.safe_dump(
                {
                    "collector": {"address": f"127.0.0.1:{grpc_port}", "max_backoff": "1s"},
                    "probe_interval": f"{PROBE_INTERVAL}s",
                    "heartbeat_interval": f"{HEARTBEAT}s",
                }
            )
        )
        env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARIABLES}
        env["SSL_CERT_FILE"] = str(self.ca_file)
        self.collector = start(
            "preflight-collector", "--config", str(config), env=env, log=tmp / "collector.log"
        )
        self.agents = [
            start(
                "preflight-agent",
                "--config",
                str(agent_config),
                "--node-name",
                node,
                # Before the first ack: the same file, never the packaged internet targets.
                "--profile",
                str(self.profile),
                env=env,
                log=tmp / f"agent-{node}.log",
            )
            for node in NODES
        ]

    def write_profile(self, sites: tuple[str, ...]) -> Path:
        return write_profile(
            self.tmp / "profile.yaml", [local_target(s, self.servers[s].port) for s in sites]
        )

    def metrics(self) -> Samples:
        return scrape(f"http://127.0.0.1:{self.http_port}/metrics")

    def node(self, name: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.http_port}/api/v1/nodes/{name}"
        with urllib.request.urlopen(url, timeout=5) as response:
            data: dict[str, Any] = json.loads(response.read())
        return data

    def close(self) -> None:
        for process in [*self.agents, self.collector]:
            stop(process)
        for server in self.servers.values():
            server.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[PlanCluster]:
    c = PlanCluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


def egress_series(metrics: Samples) -> dict[str, set[str]]:
    """Node → every target named by any preflight_egress_* series of that node."""
    found: dict[str, set[str]] = {n: set() for n in NODES}
    for name, labels in metrics:
        label = dict(labels)
        if name.startswith("preflight_egress_") and "node" in label:
            found.setdefault(label["node"], set()).add(label["target"])
    return found


def probes_exactly(cluster: PlanCluster, sites: set[str], version: str) -> bool:
    metrics = cluster.metrics()
    if egress_series(metrics) != {n: sites for n in NODES}:
        return False
    for node in NODES:
        for site in sites:
            key = (("node", node), ("target", site))
            if metrics.get(("preflight_egress_up", key)) != 1.0:
                return False
        if metrics.get(("preflight_agent_plan_outdated", (("node", node),))) != 0.0:
            return False
        plan = cluster.node(node)["plan"]
        if (plan["version"], plan["source"], plan["outdated"]) != (version, "collector", False):
            return False
    return True


@pytest.mark.timeout(120)
def test_swapped_profile_reaches_every_agent_within_one_heartbeat(cluster: PlanCluster) -> None:
    old = plan_from_profile(load_profile(str(cluster.profile)), system=True).version
    wait_for(lambda: probes_exactly(cluster, {"old-one", "old-two"}, old), 30, "old plan probed")
    for node in NODES:
        assert cluster.node(node)["plan"]["local_targets"] == []

    cluster.write_profile(("new-one", "new-two"))
    new = plan_from_profile(load_profile(str(cluster.profile)), system=True).version
    assert new != old
    swapped = time.monotonic()
    took = wait_for(
        lambda: probes_exactly(cluster, {"new-one", "new-two"}, new),
        HEARTBEAT + PROFILE_POLL + PROBE_TIMEOUT,
        "both agents probe exactly the new targets, old series gone",
    )
    print(
        f"new plan probed by both agents {took:.2f}s after the swap "
        f"(heartbeat {HEARTBEAT}s, profile poll {PROFILE_POLL}s, probe interval {PROBE_INTERVAL}s)"
    )
    # Settled, not a passing moment: a heartbeat later it is still exactly the new plan.
    time.sleep(max(0.0, swapped + HEARTBEAT + PROFILE_POLL + PROBE_TIMEOUT - time.monotonic()))
    assert probes_exactly(cluster, {"new-one", "new-two"}, new)
    log = (cluster.tmp / "collector.log").read_text()
    assert "profile reloaded" in log
