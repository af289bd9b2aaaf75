"""Chaos, short version: the collector gone for a while, then back; killed and restarted.

Real processes on loopback. While no collector answers, a real agent keeps probing and
holds one pending report (the newest) per replica: its resident memory stays flat, it
retries with capped, jittered backoff, and when a collector appears on the address it
is delivered at once. A collector SIGKILLed while three agents report is complete again
within one heartbeat of its restart, without restarting the agents. (The long version,
ten minutes of absence and a collector killed under load, is bench/bench_chaos.py parts a
and b; figures in docs/operations.md.)
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.metrics import sample, scrape
from tests.support.procs import LoopbackProcesses, rss_kib, wait_for, write_collector_config
from tests.support.servers import free_port

pytestmark = pytest.mark.e2e

HEARTBEAT = 1.0
MAX_BACKOFF = 2.0
NODES = ("chaos-1", "chaos-2", "chaos-3")


class Site(LoopbackProcesses):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        write_collector_config(
            self.collector_config,
            f"127.0.0.1:{self.grpc_port}",
            f"127.0.0.1:{self.http_port}",
            HEARTBEAT,
        )
        # No egress targets reachable here and none needed: the hardware, GPU and mount
        # probes run for real; a target on a closed loopback port fails fast.
        self.agent_config.write_text(
            yaml.safe_dump(
                {
                    "collector": {
                        "address": f"127.0.0.1:{self.grpc_port}",
                        "max_backoff": f"{MAX_BACKOFF}s",
                        "timeout": "1s",
                    },
                    "probe_interval": "0.5s",
                    "heartbeat_interval": f"{HEARTBEAT}s",
                    "egress": {
                        "timeout": "1s",
                        "targets": [
                            {
                                "name": "closed",
                                "host": "127.0.0.1",
                                "port": free_port(),
                                "proxy": "none",
                            }
                        ],
                    },
                }
            )
        )

    def all_up(self) -> bool:
        metrics = scrape(self.metrics_url)
        return all(sample(metrics, "preflight_agent_up", node=n) == 1.0 for n in NODES)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.mark.timeout(120)
def test_collector_gone_then_back_agent_memory_flat_one_pending_report(site: Site) -> None:
    site.start_agent(NODES[0])
    agent = site.agents[NODES[0]]
    # Settle (imports, first cycles), then watch a stretch of 16 heartbeats, 32 cycles.
    time.sleep(6)
    early = rss_kib(agent.pid)
    time.sleep(16)
    late = rss_kib(agent.pid)
    assert agent.poll() is None
    # Flat: what an absent collector leaves behind is one report, not a queue.
    assert late <= early * 1.05 + 1024, (early, late)
    log = (site.tmp / f"agent-{NODES[0]}.log").read_text()
    delays = [float(d) for d in re.findall(r"retrying in ([0-9.]+)s", log)]
    assert len(delays) >= 4, log
    assert max(delays) <= MAX_BACKOFF
    assert len(set(delays)) > 1, f"no jitter: {delays}"

    site.start_collector()
    took = wait_for(
        lambda: sample(scrape(site.metrics_url), "preflight_agent_up", node=NODES[0]) == 1.0,
        MAX_BACKOFF + HEARTBEAT + 5,
        "the agent's report arrives once a collector listens",
    )
    print(f"rss {early} -> {late} KiB over 16 s without a collector; back after {took:.2f}s")
    # The newest report: sequence numbers went on while nothing was delivered.
    metrics = scrape(site.metrics_url)
    assert sample(metrics, "preflight_agent_up", node=NODES[0]) == 1.0
    assert "reachable again" in (site.tmp / f"agent-{NODES[0]}.log").read_text()


@pytest.mark.timeout(120)
def test_collector_sigkilled_is_complete_within_one_heartbeat_of_restart(site: Site) -> None:
    site.start_collector()
    for node in NODES:
        site.start_agent(node)
    wait_for(site.all_up, 30, "every agent reports")
    assert site.collector is not None
    site.collector.send_signal(signal.SIGKILL)
    site.collector.wait(10)
    time.sleep(3 * HEARTBEAT)  # every agent now holds a pending report and backs off
    site.start_collector()
    wait_for(lambda: scrape(site.metrics_url) is not None, 30, "the collector serves again")
    took = wait_for(site.all_up, MAX_BACKOFF + HEARTBEAT + 1, "every node back after the restart")
    print(f"every node back {took:.2f}s after the restarted collector served")
    assert all(p.poll() is None for p in site.agents.values())
