"""Issue 3's end-to-end scenario: three node namespaces, an "internet", a collector, agents.

Every default target of profile runai-2020 is served under its real name (dnsmasq) with
a certificate from a test CA. All green; nftables in one node drops one target and the
collector shows exactly that node × target down with `connect_timeout`; restoring the
rule brings it back. Then every node goes through tinyproxy, which starts denying one
host: `proxy_denied` for that host on every node, everything else up through the proxy.
Detection times are printed (never asserted: the machine is shared and noisy).
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from preflight.profile import load_profile
from tests.support.egress_scenario import (
    HUB,
    NODES,
    PREFIX,
    PROXY_PORT,
    Scenario,
    built,
    clean_stale,
    missing_requirements,
)
from tests.support.metrics import Samples
from tests.support.netns import Netns

# The targets of the packaged profile, as the agents get them in their probe plan.
RUNAI_2020 = tuple(dataclasses.asdict(t) for t in load_profile("runai-2020").egress.targets)

pytestmark = [pytest.mark.e2e, pytest.mark.root]

PROBE_INTERVAL = 1.0
PROBE_TIMEOUT = 2.0
HEARTBEAT = 5.0
# Generous on a shared 2-core machine; the measured time is what the scenario reports.
DETECTION_LIMIT = 30.0
TARGETS = tuple(spec["name"] for spec in RUNAI_2020)
CUT_NODE, CUT_TARGET = "node-2", "quay.io"
DENIED_HOST = "hub.docker.com"


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    why = missing_requirements()
    if why:
        pytest.skip(why)
    with built(tmp_path, HEARTBEAT, PROBE_INTERVAL, PROBE_TIMEOUT) as world:
        yield world


def egress_state(metrics: Samples) -> dict[tuple[str, str], tuple[float | None, set[str]]]:
    """(node, target) → (preflight_egress_up, the reasons currently reported)."""
    state: dict[tuple[str, str], tuple[float | None, set[str]]] = {
        (n, t): (None, set()) for n in NODES for t in TARGETS
    }
    for (name, labels), value in metrics.items():
        label = dict(labels)
        key = (label.get("node", ""), label.get("target", ""))
        if key not in state:
            continue
        _, reasons = state[key]
        if name == "preflight_egress_up":
            state[key] = (value, reasons)
        elif name == "preflight_egress_failure" and value == 1.0:
            reasons.add(label["reason"])
    return state


def expect(down: dict[tuple[str, str], str], proxied: bool) -> Callable[[Samples], list[str]]:
    """A check: every (node, target) in `down` has exactly that reason, all others are up."""

    def mismatches(metrics: Samples) -> list[str]:
        wrong = []
        for key, (up, reasons) in egress_state(metrics).items():
            want = down.get(key)
            if want is None and (up != 1.0 or reasons):
                wrong.append(f"{key} should be up, is up={up} reasons={sorted(reasons)}")
            elif want is not None and (up != 0.0 or reasons != {want}):
                wrong.append(f"{key} should be down with {want}, is up={up} {sorted(reasons)}")
            proxy_used = metrics.get(
                ("preflight_egress_proxy_used", (("node", key[0]), ("target", key[1])))
            )
            if proxy_used != (1.0 if proxied else 0.0):
                wrong.append(f"{key} proxy_used={proxy_used}, want proxied={proxied}")
        return wrong

    return mismatches


def settle(world: Scenario, check: Callable[[Samples], list[str]], what: str) -> float:
    """Polls the collector until `check` finds nothing wrong; the seconds it took."""
    started = time.monotonic()
    wrong: list[str] = []
    while time.monotonic() - started < DETECTION_LIMIT:
        wrong = check(world.scrape())
        if not wrong:
            return time.monotonic() - started
        time.sleep(0.1)
    detail = "\n".join(wrong)
    raise AssertionError(
        f"not within {DETECTION_LIMIT:g}s: {what}\n{detail}\n{world.diagnostics()}"
    )


@pytest.mark.timeout(300)
def test_egress_scenario_drop_then_proxy_denial(scenario: Scenario) -> None:
    world = scenario
    bound = PROBE_INTERVAL + PROBE_TIMEOUT
    world.start_agents()
    took = settle(world, expect({}, proxied=False), "every node reaches every target directly")
    print(f"\nall {len(NODES)}x{len(TARGETS)} up directly {took:.2f}s after the agents started")

    # nftables in one node drops one target's address:443.
    world.drop(CUT_NODE, CUT_TARGET)
    took = settle(
        world,
        expect({(CUT_NODE, CUT_TARGET): "connect_timeout"}, proxied=False),
        f"{CUT_NODE} x {CUT_TARGET} down with connect_timeout, all else up",
    )
    print(
        f"drop on {CUT_NODE} -> {CUT_TARGET}: connect_timeout at the collector after "
        f"{took:.2f}s (probe interval {PROBE_INTERVAL:g}s + timeout {PROBE_TIMEOUT:g}s = "
        f"{bound:g}s; heartbeat {HEARTBEAT:g}s)"
    )
    # A drop never shows up anywhere else, and stays what it is across later cycles.
    time.sleep(PROBE_INTERVAL + PROBE_TIMEOUT)
    assert not expect({(CUT_NODE, CUT_TARGET): "connect_timeout"}, proxied=False)(world.scrape())

    world.restore(CUT_NODE)
    took = settle(world, expect({}, proxied=False), "all up again after the rule is removed")
    print(f"rule removed: {CUT_NODE} x {CUT_TARGET} up again after {took:.2f}s")

    # Every node through the proxy (NO_PROXY keeps the collector's address direct).
    world.start_proxy()
    world.stop_agents()
    world.start_agents(
        {"HTTPS_PROXY": f"http://{HUB}:{PROXY_PORT}", "NO_PROXY": f"{HUB},localhost"}
    )
    took = settle(world, expect({}, proxied=True), "every node reaches every target via proxy")
    print(f"all up through tinyproxy {took:.2f}s after the agents restarted with HTTPS_PROXY")

    world.start_proxy(deny_hosts=(r"^hub\.docker\.com$",))
    denied = {(node, DENIED_HOST): "proxy_denied" for node in NODES}
    took = settle(
        world,
        expect(denied, proxied=True),
        f"proxy_denied for {DENIED_HOST} on every node, all else up via the proxy",
    )
    print(
        f"proxy denying {DENIED_HOST}: proxy_denied on all {len(NODES)} nodes {took:.2f}s "
        f"after tinyproxy restarted with the filter (bound {bound:g}s)"
    )
    log = world.proxy.log_text() if world.proxy is not None else ""
    refused = set(re.findall(r'refused on filtered domain "([^"]*)"', log))
    assert refused == {DENIED_HOST}, "tinyproxy's filter denied that host and only it"


@pytest.mark.timeout(60)
def test_stale_scenario_namespaces_are_removed() -> None:
    why = missing_requirements()
    if why:
        pytest.skip(why)
    # A pid above any pid_max: the run that "made" it is certainly gone.
    stale = Netns(f"{PREFIX}99999999-inet")
    try:
        stale.spawn("sleep", "300")
        assert stale.name in clean_stale()
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        assert stale.name not in listed.stdout
        assert not stale.etc.exists()
        assert stale.processes[0].wait(timeout=10) != 0, "its process was ended"
    finally:
        stale.close()
