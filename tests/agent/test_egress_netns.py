"""Egress reasons that need a network of their own, proven in network namespaces.

Layout (all addresses exist only inside these namespaces):

  client ── veth 10.251.7.1/30 ─── 10.251.7.2/30 ── far (tinyproxy on :3128;
     │  dnsmasq on 127.0.0.1:53 (*.test local)          10.251.8.1/24 on lo,
     │  SERVFAIL server on 127.0.0.2:53                  unroutable from client)
     │  nftables: drop tcp to 10.251.7.2:9
     │  no default route
  silent: resolv.conf → a UDP socket on 127.0.0.1:53 that never answers

The probe runs in a subprocess under `ip netns exec`, so getaddrinfo really goes
through the namespace's resolv.conf, as a workload's would.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.netns import (
    Netns,
    link_pair,
    missing_requirements,
    nft,
    python_in,
    spawn_python,
)
from tests.support.proxies import Tinyproxy
from tests.support.servers import Pki

pytestmark = [pytest.mark.e2e, pytest.mark.root]

DROP_RULES = """
table inet pfegress {
  chain out {
    type filter hook output priority 0; policy accept;
    ip daddr 10.251.7.2 tcp dport 9 drop
  }
}
"""


def _wait_for(path: Path, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{path} never said {text!r}: {path.read_text(errors='replace')}")


def _target(name: str, host: str, port: int = 8443, **kwargs: Any) -> dict[str, Any]:
    return {"name": name, "host": host, "port": port, "proxy": "none", **kwargs}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    why = missing_requirements()
    if why:
        pytest.skip(why)
    directory = tmp_path_factory.mktemp("netns")
    pki = Pki.create(directory)
    cert, key = pki.write_leaf(directory, "origin", "known.test", "onlyproxy.test")
    tag = f"{os.getpid() % 100000}"
    made: list[Netns] = []
    proxy: Tinyproxy | None = None
    try:
        client = Netns(
            f"pf-egress-{tag}-c",
            resolv_conf="nameserver 127.0.0.1\noptions timeout:1 attempts:2\n",
        )
        made.append(client)
        far = Netns(f"pf-egress-{tag}-f", hosts="127.0.0.1 localhost\n10.251.7.1 onlyproxy.test\n")
        made.append(far)
        silent = Netns(
            f"pf-egress-{tag}-s", resolv_conf="nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
        )
        made.append(silent)
        link_pair(client, f"pfe{tag}a", "10.251.7.1/30", far, f"pfe{tag}b", "10.251.7.2/30")
        far.run("ip", "addr", "add", "10.251.8.1/24", "dev", "lo")
        nft(client, DROP_RULES)

        dnsmasq_log = directory / "dnsmasq.log"
        client.spawn(
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--port=53",
            "--user=root",
            "--pid-file=",
            "--log-facility=-",
            "--local=/test/",
            "--address=/known.test/127.0.0.1",
            "--server=/servfail.test/127.0.0.2",
            log=dnsmasq_log,
        )
        servfail_log, silent_log = directory / "servfail.log", directory / "silent.log"
        spawn_python(client, "tests.support.fake_dns", "servfail", "127.0.0.2", log=servfail_log)
        spawn_python(silent, "tests.support.fake_dns", "silent", "127.0.0.1", log=silent_log)
        _wait_for(dnsmasq_log, "started")
        _wait_for(servfail_log, "ready")
        _wait_for(silent_log, "ready")
        proxy = Tinyproxy(
            directory, "far", 3128, listen="10.251.7.2", netns=far.name, allow=["10.251.7.0/30"]
        )

        client_spec = {
            "servers": [{"host": "0.0.0.0", "port": 8443, "cert": str(cert), "key": str(key)}],
            "config": {
                "ca_file": str(pki.ca_file),
                "timeout": "3s",
                "targets": [
                    _target("ok", "known.test"),
                    _target("nxdomain", "unknown.test"),
                    _target("servfail", "servfail.test"),
                    _target("no-ipv6", "known.test", family="ipv6"),
                    _target("dropped", "10.251.7.2", port=9, timeout="1500ms"),
                    _target("no-route", "10.251.8.1", port=443),
                    _target("via-proxy", "onlyproxy.test", proxy="http://10.251.7.2:3128"),
                ],
            },
        }
        silent_spec = {
            "config": {
                "targets": [
                    _target("resolver-gives-up", "silent.test", timeout="4s"),
                    _target("deadline-first", "other.test", timeout="700ms"),
                ],
            }
        }
        out = python_in(
            client, "tests.support.netns_runner", stdin=json.dumps(client_spec).encode()
        )
        out_silent = python_in(
            silent, "tests.support.netns_runner", stdin=json.dumps(silent_spec).encode()
        )
        found = {r["target"]: r for r in json.loads(out) + json.loads(out_silent)}
        if os.environ.get("PF_EGRESS_SHOW"):
            print(json.dumps(found, indent=1))
        yield found
    finally:
        if proxy is not None:
            proxy.stop()
        for ns in reversed(made):
            ns.close()


def test_success_through_the_namespace_resolver(results: dict[str, dict[str, Any]]) -> None:
    ok = results["ok"]
    assert ok["up"], ok["message"]
    assert ok["dns"]["addresses"] == ["127.0.0.1"]
    assert ok["dns"]["family"] == "ipv4"
    assert ok["certificate"]["verified"]


def test_name_the_dns_server_does_not_know(results: dict[str, dict[str, Any]]) -> None:
    r = results["nxdomain"]
    assert (r["reason"], r["failed_phase"]) == ("dns_nxdomain", "resolve")
    assert r["dns"]["reason"] == "dns_nxdomain"


def test_family_without_addresses(results: dict[str, dict[str, Any]]) -> None:
    r = results["no-ipv6"]
    assert (r["reason"], r["failed_phase"]) == ("dns_nxdomain", "resolve")
    assert "IPv6" in r["message"]


def test_dns_server_failure(results: dict[str, dict[str, Any]]) -> None:
    r = results["servfail"]
    assert (r["reason"], r["failed_phase"]) == ("dns_error", "resolve")
    assert "SERVFAIL" in r["message"]


def test_dns_server_that_never_answers(results: dict[str, dict[str, Any]]) -> None:
    # Resolver gives up first (EAI_AGAIN, then dns_detail confirms the silence)...
    gave_up = results["resolver-gives-up"]
    assert (gave_up["reason"], gave_up["failed_phase"]) == ("dns_timeout", "resolve")
    # ... or the probe deadline expires while getaddrinfo is still waiting.
    deadline = results["deadline-first"]
    assert (deadline["reason"], deadline["failed_phase"]) == ("dns_timeout", "resolve")
    assert deadline["dns"]["reason"] == "dns_timeout"


def test_packets_dropped_by_nftables(results: dict[str, dict[str, Any]]) -> None:
    r = results["dropped"]
    assert (r["reason"], r["failed_phase"]) == ("connect_timeout", "connect")


def test_no_route(results: dict[str, dict[str, Any]]) -> None:
    r = results["no-route"]
    assert (r["reason"], r["failed_phase"]) == ("network_unreachable", "connect")


def test_proxied_target_needs_no_local_dns(results: dict[str, dict[str, Any]]) -> None:
    r = results["via-proxy"]
    assert r["up"], r["message"]
    assert r["proxy_used"] and r["proxy"] == "10.251.7.2:3128"
    # The node's own DNS does not know the name; only the proxy can resolve it.
    assert r["dns"]["reason"] == "dns_nxdomain"
