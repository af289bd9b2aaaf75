"""Real processes: a collector, two real agents, and one hostile client sending its worst.

While the hostile client floods the gRPC port with refused, oversized, corrupted and
made-up-name reports, the agents' series keep following their nodes (a target that
stops is seen down on both), the collector stays ready, judging keeps completing, and
every refusal is counted.
"""

from __future__ import annotations

import math
import random
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from preflight.v1 import report_pb2 as pb
from tests.e2e.test_loopback import HEARTBEAT, STALE_AFTER_HEARTBEATS, Cluster
from tests.support.metrics import sample, scrape
from tests.support.procs import wait_for, write_collector_config

pytestmark = pytest.mark.e2e

MAX_NODES = 12


def _worst(rng: random.Random, sequence: int) -> bytes:
    """One hostile payload: refused for a reason, or accepted under a made-up name."""
    message = pb.NodeReport(node_name=f"fake-{rng.randrange(10_000)}", sequence=sequence)
    choice = rng.randrange(9)
    if choice == 0:
        mount = message.mounts.add(path="/mnt/nas")
        mount.marker.peers.add(node_name="node-1").written_at.seconds = 253_402_300_800
    elif choice == 1:
        e = message.egress.add(target="site-one")
        e.certificate.not_after.seconds = -(2**62)
    elif choice == 2:
        message.egress.add(target="site-one", total_seconds=math.nan)
    elif choice == 3:
        message.egress.add(target="site-one")
        message.egress.add(target="site-one")
    elif choice == 4:
        message.egress.add(target="x" * 60_000)
    elif choice == 5:
        message.sent_at.seconds = 2**40
    elif choice == 6:
        return b"\x0a\xff\xff\xff\xff\x0f garbage"
    elif choice == 7:
        message.agent_version = "y" * (17 * 1024 * 1024)  # over gRPC's own ceiling
    # choice 8: a plausible report under a made-up name (bounded by limits.max_nodes)
    return message.SerializeToString()


class HostileClient:
    def __init__(self, port: int) -> None:
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
        )
        self.call = self.channel.unary_unary("/preflight.v1.Collector/Report")
        self.stop = threading.Event()
        self.sent = 0
        self.answers: dict[str, int] = {}
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        rng = random.Random(10)
        while not self.stop.is_set():
            try:
                self.call(_worst(rng, self.sent), timeout=10)
                code = "OK"
            except grpc.RpcError as error:
                code = error.code().name  # type: ignore[attr-defined]
            self.sent += 1
            self.answers[code] = self.answers.get(code, 0) + 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        self.channel.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    write_collector_config(
        c.collector_config,
        f"127.0.0.1:{c.grpc_port}",
        f"127.0.0.1:{c.http_port}",
        HEARTBEAT,
        stale_after_heartbeats=STALE_AFTER_HEARTBEATS,
        limits={"max_nodes": MAX_NODES},
    )
    try:
        yield c
    finally:
        c.close()


def ready(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as response:
        return bool(response.status == 200)


@pytest.mark.timeout(240)
def test_agents_keep_being_judged_while_a_hostile_client_floods(cluster: Cluster) -> None:
    nodes, targets = ("node-1", "node-2"), ("site-one", "site-two")
    cluster.start_collector()
    for node in nodes:
        cluster.start_agent(node)
    wait_for(
        lambda: all(cluster.egress_up(n, t) == 1.0 for n in nodes for t in targets),
        30,
        "both nodes report every target up",
    )
    hostile = HostileClient(cluster.grpc_port)
    hostile.thread.start()
    try:
        wait_for(lambda: hostile.sent >= 200, 60, "the hostile client got going")
        # The agents' data keeps following their nodes: a target stops, both see it.
        cluster.servers["site-two"].stop()
        wait_for(
            lambda: all(cluster.egress_up(n, "site-two") == 0.0 for n in nodes),
            HEARTBEAT * 2,
            "site-two down on both nodes during the flood",
        )
        assert ready(cluster.http_port)
        first = scrape(cluster.metrics_url)
        judged = sample(first, "preflight_verdicts_timestamp_seconds") or 0.0
        wait_for(
            lambda: (
                (sample(scrape(cluster.metrics_url), "preflight_verdicts_timestamp_seconds") or 0.0)
                > judged + 2
            ),
            30,
            "judging keeps completing during the flood",
        )
    finally:
        hostile.close()
    metrics = scrape(cluster.metrics_url)
    for node in nodes:
        assert sample(metrics, "preflight_agent_up", node=node) == 1.0
        assert sample(metrics, "preflight_egress_up", node=node, target="site-one") == 1.0
    rejected = {
        dict(labels)["reason"]: value
        for (name, labels), value in metrics.items()
        if name == "preflight_reports_rejected_total"
    }
    for reason in (
        "invalid_timestamp",
        "invalid_number",
        "duplicate_name",
        "label_too_long",
        "malformed",
        "message_too_large",
        "too_many_nodes",
    ):
        assert rejected[reason] > 0, (reason, rejected, hostile.answers)
    refused = sum(v for k, v in hostile.answers.items() if k != "OK")
    assert sum(rejected.values()) >= refused  # every refusal the client saw was counted
    reporting = {
        dict(labels)["node"]
        for (name, labels), _ in metrics.items()
        if name == "preflight_agent_up"
    }
    assert len(reporting) <= MAX_NODES and set(nodes) <= reporting
    assert sample(metrics, "preflight_judging_errors_total") == 0.0
    print(f"hostile client: {hostile.sent} reports, answers {hostile.answers}")
