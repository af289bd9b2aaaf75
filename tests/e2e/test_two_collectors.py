"""Two collectors, one picture: real processes, one name resolving to both, three agents.

The collectors listen on 127.0.0.2 and 127.0.0.3 (the same ports), as two pods behind
a headless Service. The agents run in a private mount namespace whose /etc/hosts maps
one name to both addresses: the real system resolver (getaddrinfo, `multi on`) gives
the agent both, exactly as cluster DNS answers for a headless Service. One collector is
SIGKILLed: the other keeps every node fresh and its verdicts never change, and no agent
restarts; the killed one comes back and holds every node again within one heartbeat.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from tests.support.procs import BIN, HttpsServer, start, stop, wait_for, write_collector_config
from tests.support.profiles import local_target, write_profile
from tests.support.servers import REPLICA_ADDRESSES, port_free_on_all

pytestmark = pytest.mark.e2e

NAME = "collectors.preflight.test"
ADDRESSES = REPLICA_ADDRESSES
NODES = ("node-1", "node-2", "node-3")
HEARTBEAT = 4.0
PROBE_INTERVAL = 1.0
MAX_BACKOFF = 1.0


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


class Replicas:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ca = trustme.CA()
        self.ca_file = tmp / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.site = HttpsServer(self.ca)
        self.grpc_port, self.http_port = port_free_on_all(), port_free_on_all()
        profile = write_profile(tmp / "profile.yaml", [local_target("site", self.site.port)])
        self.configs = {
            ip: write_collector_config(
                tmp / f"collector-{ip}.yaml",
                f"{ip}:{self.grpc_port}",
                f"{ip}:{self.http_port}",
                HEARTBEAT,
                profile=str(profile),
            )
            for ip in ADDRESSES
        }
        self.hosts = tmp / "hosts"
        self.hosts.write_text(
            "127.0.0.1 localhost\n" + "".join(f"{ip} {NAME}\n" for ip in ADDRESSES)
        )
        self.agent_config = tmp / "agent.yaml"
        self.agent_config.write_text(
            yaml.safe_dump(
                {
                    "collector": {
                        "address": f"{NAME}:{self.grpc_port}",
                        "max_backoff": f"{MAX_BACKOFF}s",
                        "resolve_interval": "2s",
                    },
                    "profile": str(profile),
                    "probe_interval": f"{PROBE_INTERVAL}s",
                    "heartbeat_interval": f"{HEARTBEAT}s",
                    "egress": {
                        "timeout": "2s",
                        "targets": [
                            {
                                "name": "site",
                                "host": "localhost",
                                "port": self.site.port,
                                "proxy": "none",
                            }
                        ],
                    },
                }
            )
        )
        self.env = {**os.environ, "SSL_CERT_FILE": str(self.ca_file)}
        self.collectors: dict[str, subprocess.Popen[bytes]] = {}
        self.agents: dict[str, subprocess.Popen[bytes]] = {}

    def url(self, ip: str, path: str) -> str:
        return f"http://{ip}:{self.http_port}{path}"

    def start_collector(self, ip: str) -> None:
        self.collectors[ip] = start(
            "preflight-collector",
            "--config",
            str(self.configs[ip]),
            log=self.tmp / f"collector-{ip}.log",
        )

    def start_agent(self, node: str) -> None:
        log = open(self.tmp / f"agent-{node}.log", "wb")  # noqa: SIM115 — lives with the process
        # Its own /etc/hosts, seen by this agent only: the name resolves to both replicas.
        self.agents[node] = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--fork",
                "--kill-child",
                "sh",
                "-c",
                'mount --bind "$0" /etc/hosts && exec "$@"',
                str(self.hosts),
                str(BIN / "preflight-agent"),
                "--config",
                str(self.agent_config),
                "--node-name",
                node,
            ],
            env=self.env,
            stdout=log,
            stderr=log,
        )

    def nodes(self, ip: str) -> dict[str, dict[str, Any]]:
        return {n["node"]: n for n in get_json(self.url(ip, "/api/v1/nodes"))["nodes"]}

    def complete(self, ip: str) -> bool:
        nodes = self.nodes(ip)
        return all(n in nodes and nodes[n]["up"] and nodes[n]["egress"] for n in NODES)

    def verdicts(self, ip: str) -> dict[str, str]:
        answer = get_json(self.url(ip, "/api/v1/verdicts"))
        return {v["requirement"]: v["status"] for v in answer["verdicts"]}

    def settled(self) -> bool:
        """Both replicas give the same verdicts, unchanged for a heartbeat and a probe."""
        first = self.verdicts(ADDRESSES[0])
        if first.get("egress_install") != "pass":
            return False
        until = time.monotonic() + HEARTBEAT + PROBE_INTERVAL
        while time.monotonic() < until:
            if any(self.verdicts(ip) != first for ip in ADDRESSES):
                return False
            time.sleep(0.25)
        return True

    def close(self) -> None:
        for process in [*self.agents.values(), *self.collectors.values()]:
            stop(process)
        self.site.stop()


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Replicas]:
    r = Replicas(tmp_path)
    try:
        yield r
    finally:
        r.close()


@pytest.mark.timeout(180)
def test_one_collector_killed_the_other_keeps_the_picture(replicas: Replicas) -> None:
    survivor, victim = ADDRESSES
    for ip in ADDRESSES:
        replicas.start_collector(ip)
    for node in NODES:
        replicas.start_agent(node)
    wait_for(
        lambda: all(replicas.complete(ip) for ip in ADDRESSES), 60, "every node reports to both"
    )
    # Both replicas hold the same picture: the same verdicts (judged from the agents'
    # reports: every node reaches the site), settled (unchanged for a heartbeat and a
    # probe, so late first results such as the GPU probe's are in), every node up.
    wait_for(replicas.settled, 60, "both replicas judge alike, settled")
    before = replicas.verdicts(survivor)
    assert before["egress_install"] == "pass", before
    pids = {node: p.pid for node, p in replicas.agents.items()}

    replicas.collectors[victim].send_signal(signal.SIGKILL)
    replicas.collectors[victim].wait(10)

    # Three heartbeats without the victim: the survivor sees every node fresh all along
    # (never older than a heartbeat plus a probe interval) and judges exactly as before.
    ages: list[float] = []
    flips: list[dict[str, str]] = []
    watch_until = time.monotonic() + 3 * HEARTBEAT
    while time.monotonic() < watch_until:
        nodes = replicas.nodes(survivor)
        assert all(nodes[n]["up"] for n in NODES), nodes
        ages.extend(nodes[n]["last_report_age_seconds"] for n in NODES)
        verdicts = replicas.verdicts(survivor)
        if verdicts != before:
            flips.append(verdicts)
        time.sleep(0.25)
    assert flips == [], f"verdicts changed on the survivor: {before} -> {flips[:1]}"
    assert max(ages) <= HEARTBEAT + PROBE_INTERVAL + 1, max(ages)
    # No agent restarted: the same processes, still running.
    assert {n: p.pid for n, p in replicas.agents.items()} == pids
    assert all(p.poll() is None for p in replicas.agents.values())

    replicas.start_collector(victim)
    wait_for(
        lambda: urllib.request.urlopen(replicas.url(victim, "/healthz"), timeout=5).status == 200,
        30,
        "the victim serves HTTP again",
    )
    took = wait_for(
        lambda: replicas.complete(victim),
        HEARTBEAT + MAX_BACKOFF + 1,
        "the restarted collector holds every node again within one heartbeat",
    )
    print(f"restarted collector complete {took:.2f}s after it served (heartbeat {HEARTBEAT}s)")
    # Its verdicts follow from the same reports (the judge runs on its own tick).
    wait_for(
        lambda: replicas.verdicts(victim) == before,
        HEARTBEAT,
        f"the restarted collector judges as before: {before}",
    )
    assert replicas.verdicts(survivor) == before
    assert all(p.poll() is None for p in replicas.agents.values())
    for node in NODES:
        text = (replicas.tmp / f"agent-{node}.log").read_text()
        # One start per agent, and both replicas found through the one name.
        assert text.count(f"for node {node} pushing to") == 1, text
        for ip in ADDRESSES:
            assert f"collector replica {ip} added" in text, text
