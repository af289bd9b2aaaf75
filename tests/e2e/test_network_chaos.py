"""Chaos, short version: the nodes' DNS server dies mid-run; the egress proxy restarts.

The world of the egress scenario (tests/support/egress_scenario.py): three node
namespaces resolving the runai-2020 targets' real names through a real dnsmasq, real
HTTPS origins, a real collector, real agents (and a real tinyproxy for the proxy test).

- DNS: dnsmasq first hangs (SIGSTOP: there but silent), then dies (SIGKILL), then a
  fresh one starts. While it is hung or gone every node reports every target down in the
  resolve phase with a DNS reason, the egress verdicts fail, and the agents keep
  reporting (the collector is reached by address, not by name); with DNS back every
  target is up again and the verdicts pass.
- Proxy: every node goes through tinyproxy; it stops: every target down with
  `connect_refused` in the connect phase, the message naming the proxy, agents still
  reporting; it starts again on the same port: everything up through it.

Detection and recovery times are printed (never asserted). The long versions (minutes of
outage) are bench/bench_chaos.py (parts c, d) and docs/operations.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from preflight.profile import load_profile
from tests.support.egress_scenario import (
    HUB,
    NODES,
    PROXY_PORT,
    Scenario,
    built,
    egress_reasons,
    missing_requirements,
)
from tests.support.metrics import Samples, sample

pytestmark = [pytest.mark.e2e, pytest.mark.root]

TARGETS = tuple(t.name for t in load_profile("runai-2020").egress.targets)
PROBE_INTERVAL = 1.0
PROBE_TIMEOUT = 3.0
HEARTBEAT = 5.0
LIMIT = 40.0  # generous on a shared 2-core machine; the measured time is printed
DNS_REASONS = {"dns_timeout", "dns_error"}


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    why = missing_requirements()
    if why:
        pytest.skip(why)
    with built(tmp_path, HEARTBEAT, PROBE_INTERVAL, PROBE_TIMEOUT) as world:
        yield world


def reasons(metrics: Samples) -> dict[tuple[str, str], str | None]:
    """(node, target) → the reason reported now, None when up, "?" when not reported."""
    return egress_reasons(metrics, NODES, TARGETS)


def wait_until(
    world: Scenario, check: Callable[[Samples], list[str]], what: str
) -> tuple[float, Samples]:
    """Polls the collector until `check` finds nothing wrong: (seconds, the last scrape)."""
    started = time.monotonic()
    wrong: list[str] = []
    while time.monotonic() - started < LIMIT:
        metrics = world.scrape()
        wrong = check(metrics)
        if not wrong:
            return time.monotonic() - started, metrics
        time.sleep(0.2)
    raise AssertionError(f"not within {LIMIT:g}s: {what}\n" + "\n".join(wrong[:10]))


def all_up(metrics: Samples) -> list[str]:
    return [f"{k} is {r}" for k, r in reasons(metrics).items() if r is not None]


def all_down_with(allowed: set[str]) -> Callable[[Samples], list[str]]:
    def check(metrics: Samples) -> list[str]:
        return [f"{k} is {r}" for k, r in reasons(metrics).items() if r not in allowed]

    return check


def agents_reporting(world: Scenario, metrics: Samples) -> None:
    for node in NODES:
        assert sample(metrics, "preflight_agent_up", node=node) == 1.0, world.diagnostics()
    assert all(p.poll() is None for p in world.agents.values()), world.diagnostics()


def egress_verdicts(world: Scenario) -> tuple[str, str]:
    verdicts = world.verdicts()
    return verdicts["egress_install"], verdicts["egress_runtime"]


@pytest.mark.timeout(300)
def test_dns_server_hangs_dies_and_returns(scenario: Scenario) -> None:
    world = scenario
    world.start_agents()
    took, _ = wait_until(world, all_up, "every node reaches every target")
    print(f"\nall {len(NODES)}x{len(TARGETS)} up {took:.2f}s after the agents started")
    wait_for_verdicts(world, ("pass", "pass"))

    # Hung: dnsmasq is there but never answers.
    world.pause_dns()
    took, metrics = wait_until(world, all_down_with({"dns_timeout"}), "dns_timeout everywhere")
    print(f"dnsmasq stopped (SIGSTOP): dns_timeout on every node x target after {took:.2f}s")
    agents_reporting(world, metrics)
    detail = world.get_json(f"/api/v1/nodes/{NODES[0]}")["report"]["egress"]
    assert {e.get("failed_phase") for e in detail} == {"PHASE_RESOLVE"}, detail
    wait_for_verdicts(world, ("fail", "fail"))
    world.pause_dns(False)
    took, _ = wait_until(world, all_up, "every target up once dnsmasq answers again")
    print(f"dnsmasq resumed (SIGCONT): all up after {took:.2f}s")

    # Dead: nothing listens on the resolver's address any more.
    world.kill_dns()
    took, metrics = wait_until(world, all_down_with(DNS_REASONS), "a DNS reason everywhere")
    seen = sorted({r for r in reasons(metrics).values() if r})
    print(f"dnsmasq SIGKILLed: every node x target down after {took:.2f}s, reasons {seen}")
    agents_reporting(world, metrics)
    wait_for_verdicts(world, ("fail", "fail"))
    time.sleep(PROBE_INTERVAL + PROBE_TIMEOUT)  # stays down while nothing answers
    assert not all_down_with(DNS_REASONS)(world.scrape())

    world.start_dns()
    took, metrics = wait_until(world, all_up, "every target up once a new dnsmasq runs")
    print(f"new dnsmasq: all up after {took:.2f}s (probe interval {PROBE_INTERVAL:g}s)")
    agents_reporting(world, metrics)
    wait_for_verdicts(world, ("pass", "pass"))


def wait_for_verdicts(world: Scenario, want: tuple[str, str]) -> None:
    started = time.monotonic()
    while egress_verdicts(world) != want:
        assert time.monotonic() - started < LIMIT, (egress_verdicts(world), want)
        time.sleep(0.2)


@pytest.mark.timeout(300)
def test_proxy_restarts(scenario: Scenario) -> None:
    world = scenario
    world.start_proxy()
    world.start_agents(
        {"HTTPS_PROXY": f"http://{HUB}:{PROXY_PORT}", "NO_PROXY": f"{HUB},localhost"}
    )
    took, metrics = wait_until(world, all_up, "every node reaches every target via tinyproxy")
    assert all(v == 1.0 for (n, _), v in metrics.items() if n == "preflight_egress_proxy_used")
    print(f"\nall up through tinyproxy {took:.2f}s after the agents started")

    # Nothing listens on the proxy's port: the connect to the proxy itself is refused,
    # reported with the connect reasons and a message naming the proxy.
    world.stop_proxy()
    took, metrics = wait_until(
        world, all_down_with({"connect_refused"}), "connect_refused (to the proxy) everywhere"
    )
    print(f"tinyproxy stopped: connect_refused on every node x target after {took:.2f}s")
    agents_reporting(world, metrics)
    detail = world.get_json(f"/api/v1/nodes/{NODES[0]}")["report"]["egress"]
    assert {e.get("failed_phase") for e in detail} == {"PHASE_CONNECT"}, detail
    assert all(e["message"].startswith("proxy connection refused") for e in detail), detail
    wait_for_verdicts(world, ("fail", "fail"))

    world.start_proxy()
    took, metrics = wait_until(world, all_up, "every target up through the restarted proxy")
    print(f"tinyproxy started again: all up after {took:.2f}s")
    agents_reporting(world, metrics)
    wait_for_verdicts(world, ("pass", "pass"))
