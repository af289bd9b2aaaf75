"""The network of the egress scenario: three node namespaces, an "internet", a collector.

Layout (every address exists only inside these namespaces; nothing routes out):

  pf-scn-<pid>-node1 ─ veth 10.254.9.101/24 ─┐
  pf-scn-<pid>-node2 ─ veth 10.254.9.102/24 ─┼─ bridge pfbr in pf-scn-<pid>-inet
  pf-scn-<pid>-node3 ─ veth 10.254.9.103/24 ─┘   10.254.9.1   dnsmasq :53, collector
                                                               :9750/:9751, tinyproxy :3128
                                                  10.254.9.11… one HTTPS origin per
                                                               default target, :443

The collector runs in the internet namespace: the agents reach it on the bridge and the
test scrapes it with `ip netns exec … curl`, so no address is added to the root
namespace. Each node resolves the targets' real names through dnsmasq, as a workload
would; each origin has an address of its own so that nftables in one node can drop
exactly one target. Namespaces carry the test's pid in their name: `clean_stale` removes
only those left behind by a process that no longer exists.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from preflight.profile import load_profile
from tests.support.metrics import Samples, parse_metrics, sample
from tests.support.netns import Netns, nft
from tests.support.procs import BIN, write_collector_config
from tests.support.proxies import Tinyproxy
from tests.support.servers import Pki

# The targets of the packaged profile, as the agents get them in their probe plan.
RUNAI_2020 = tuple(dataclasses.asdict(t) for t in load_profile("runai-2020").egress.targets)

PREFIX = "pf-scn-"
SUBNET = "10.254.9"
HUB = f"{SUBNET}.1"  # dnsmasq, collector, proxy
GRPC_PORT, HTTP_PORT, PROXY_PORT = 9751, 9750, 3128
NODES = ("node-1", "node-2", "node-3")
NFT_TABLE = "pfscn"
PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "GRPC_PROXY",
    "grpc_proxy",
)

# What each real service answers on the path the profile probes.
ORIGIN_ANSWERS: dict[str, tuple[int, list[tuple[str, str]]]] = {
    "gcr.io": (401, [("WWW-Authenticate", 'Bearer realm="https://gcr.io/v2/token"')]),
    "quay.io": (401, [("WWW-Authenticate", 'Bearer realm="https://quay.io/v2/auth"')]),
    "prometheus-us-central1.grafana.net": (405, [("Allow", "POST")]),
}


def missing_requirements() -> str | None:
    """Why the scenario cannot run here, or None."""
    if os.geteuid() != 0:
        return "root is needed for network namespaces"
    for program in ("ip", "nft", "dnsmasq", "tinyproxy", "curl"):
        if shutil.which(program) is None:
            return f"{program} is not installed"
    return None


def clean_stale() -> list[str]:
    """Removes pf-scn- namespaces whose creating test process is gone; returns their names."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    removed = []
    for line in listed.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(PREFIX):
            continue
        owner = name[len(PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and Path(f"/proc/{owner}").exists():
            continue  # a live run (possibly a concurrent one) still owns it
        pids = subprocess.run(
            ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in pids:
            # Only processes inside our own leftover namespace: dnsmasq, agents, servers.
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)
        removed.append(name)
    return removed


def origin_ip(index: int) -> str:
    return f"{SUBNET}.{11 + index}"


class Scenario:
    """The scenario's world: `build()` it, then `close()` in a finally, even if build failed."""

    def __init__(self, directory: Path, variant: str = "") -> None:
        self.directory = directory
        # The pid first (clean_stale reads it); a variant lets one process build several.
        self.tag = f"{os.getpid()}-{variant}" if variant else str(os.getpid())
        self.dns: subprocess.Popen[bytes] | None = None
        self.namespaces: list[Netns] = []
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        self.proxy: Tinyproxy | None = None
        self.address_of = {spec["name"]: origin_ip(i) for i, spec in enumerate(RUNAI_2020)}
        self.pki = Pki.create(directory)
        self.agent_config = directory / "agent.yaml"
        self.collector_config = directory / "collector.yaml"

    # ---- building -------------------------------------------------------------------

    def build(self, heartbeat: float, probe_interval: float, probe_timeout: float) -> None:
        resolv = f"nameserver {HUB}\noptions timeout:1 attempts:2\n"
        self.inet = self._namespace("inet", resolv)
        self.nodes = {node: self._namespace(f"node{i + 1}", resolv) for i, node in enumerate(NODES)}
        self.inet.run("ip", "link", "add", "pfbr", "type", "bridge")
        self.inet.run("ip", "link", "set", "pfbr", "up")
        self.inet.run("ip", "addr", "add", f"{HUB}/24", "dev", "pfbr")
        for index in range(len(RUNAI_2020)):
            self.inet.run("ip", "addr", "add", f"{origin_ip(index)}/32", "dev", "pfbr")
        for i, ns in enumerate(self.nodes.values()):
            node_if, bridge_if = f"pfs{self.tag}n{i}", f"pfs{self.tag}b{i}"
            subprocess.run(
                [
                    "ip",
                    "link",
                    "add",
                    node_if[:15],
                    "netns",
                    ns.name,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    bridge_if[:15],
                    "netns",
                    self.inet.name,
                ],
                check=True,
            )
            ns.run("ip", "addr", "add", f"{SUBNET}.{101 + i}/24", "dev", node_if[:15])
            ns.run("ip", "link", "set", node_if[:15], "up")
            self.inet.run("ip", "link", "set", bridge_if[:15], "master", "pfbr")
            self.inet.run("ip", "link", "set", bridge_if[:15], "up")
        self._start_dns()
        self._start_origins()
        self._start_collector(heartbeat)
        self._write_agent_config(heartbeat, probe_interval, probe_timeout)

    def _namespace(self, role: str, resolv: str) -> Netns:
        ns = Netns(f"{PREFIX}{self.tag}-{role}", resolv_conf=resolv)
        self.namespaces.append(ns)
        return ns

    def _start_dns(self) -> None:
        log = self.directory / "dnsmasq.log"
        addresses = [
            f"--address=/{spec['host']}/{self.address_of[spec['name']]}" for spec in RUNAI_2020
        ]
        self.dns = self.inet.spawn(
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            f"--listen-address={HUB}",
            "--port=53",
            "--user=root",
            "--pid-file=",
            "--log-facility=-",
            *addresses,
            log=log,
        )
        wait_for_text(log, "started")

    def _start_origins(self) -> None:
        hosts = sorted({spec["host"] for spec in RUNAI_2020})
        cert, key = self.pki.write_leaf(self.directory, "origins", *hosts)
        origins = []
        for spec in RUNAI_2020:
            status, headers = ORIGIN_ANSWERS.get(spec["host"], (200, []))
            origins.append(
                {
                    "host": spec["host"],
                    "ip": self.address_of[spec["name"]],
                    "port": 443,
                    "path": spec["path"],
                    "status": status,
                    "headers": headers,
                }
            )
        spec_file = self.directory / "origins.json"
        spec_file.write_text(json.dumps({"cert": str(cert), "key": str(key), "origins": origins}))
        log = self.directory / "origins.log"
        self.inet.spawn(
            str(BIN / "python"),
            "-m",
            "tests.support.egress_origins",
            str(spec_file),
            log=log,
        )
        wait_for_text(log, "ready")

    def _start_collector(self, heartbeat: float) -> None:
        write_collector_config(
            self.collector_config, f"{HUB}:{GRPC_PORT}", f"{HUB}:{HTTP_PORT}", heartbeat
        )
        self.inet.spawn(
            str(BIN / "preflight-collector"),
            "--config",
            str(self.collector_config),
            log=self.directory / "collector.log",
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError):
                self.inet.run("curl", "-sf", "--max-time", "2", f"http://{HUB}:{HTTP_PORT}/healthz")
                return
            time.sleep(0.2)
        raise RuntimeError(f"collector not serving: {self.log('collector.log')}")

    def _write_agent_config(
        self, heartbeat: float, probe_interval: float, probe_timeout: float
    ) -> None:
        # No `targets`: the agent probes exactly the built-in runai-2020 defaults.
        self.agent_config.write_text(
            yaml.safe_dump(
                {
                    "collector": {"address": f"{HUB}:{GRPC_PORT}", "max_backoff": "1s"},
                    "probe_interval": f"{probe_interval}s",
                    "heartbeat_interval": f"{heartbeat}s",
                    "egress": {"timeout": f"{probe_timeout}s"},
                }
            )
        )

    # ---- agents, proxy, faults ------------------------------------------------------

    def start_agents(self, extra_env: Mapping[str, str] | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
        env["SSL_CERT_FILE"] = str(self.pki.ca_file)
        env.update(extra_env or {})
        for node, ns in self.nodes.items():
            log = open(self.directory / f"agent-{node}.log", "ab")  # noqa: SIM115
            process = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns.name,
                    str(BIN / "preflight-agent"),
                    "--config",
                    str(self.agent_config),
                    "--node-name",
                    node,
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()  # the child holds its own descriptor
            ns.processes.append(process)  # Netns.close() ends it if the test fails
            self.agents[node] = process

    def stop_agents(self) -> None:
        for process in self.agents.values():
            if process.poll() is None:
                process.terminate()
        for process in self.agents.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.agents.clear()

    def start_proxy(self, deny_hosts: tuple[str, ...] = ()) -> None:
        """tinyproxy on the hub; replacing a running one keeps the port agents use."""
        if self.proxy is not None:
            self.proxy.stop()
        self.proxy = Tinyproxy(
            self.directory,
            f"proxy{len(deny_hosts)}",
            PROXY_PORT,
            listen=HUB,
            deny_hosts=deny_hosts,
            netns=self.inet.name,
            allow=[f"{SUBNET}.0/24"],
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError):
                self.inet.run(
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                    "--max-time",
                    "2",
                    f"http://{HUB}:{PROXY_PORT}/",
                )
                return
            time.sleep(0.1)
        raise RuntimeError(f"tinyproxy not answering: {self.proxy.log_text()}")

    def kill_dns(self) -> None:
        """SIGKILLs dnsmasq, the nodes' only DNS server: as a crashed resolver pod."""
        assert self.dns is not None
        self.dns.send_signal(signal.SIGKILL)
        self.dns.wait(10)

    def pause_dns(self, paused: bool = True) -> None:
        """SIGSTOP (or SIGCONT) dnsmasq: a DNS server that is there but never answers."""
        assert self.dns is not None
        self.dns.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)

    def start_dns(self) -> None:
        """A fresh dnsmasq on the same address, with the same records."""
        self._start_dns()

    def stop_proxy(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()

    def get_json(self, path: str) -> Any:
        """GET a collector JSON endpoint (`/api/v1/...`) from inside the hub namespace."""
        text = self.inet.run(
            "curl", "-sf", "--max-time", "5", f"http://{HUB}:{HTTP_PORT}{path}", timeout=10
        )
        return json.loads(text)

    def verdicts(self) -> dict[str, str]:
        return {
            v["requirement"]: v["status"] for v in self.get_json("/api/v1/verdicts")["verdicts"]
        }

    def drop(self, node: str, target: str) -> None:
        """nftables in `node` drops every TCP packet to the target's address:443."""
        nft(
            self.nodes[node],
            f"table inet {NFT_TABLE} {{\n  chain out {{\n"
            "    type filter hook output priority 0; policy accept;\n"
            f"    ip daddr {self.address_of[target]} tcp dport 443 drop\n  }}\n}}\n",
        )

    def restore(self, node: str) -> None:
        self.nodes[node].run("nft", "delete", "table", "inet", NFT_TABLE)

    def scrape(self) -> Samples:
        text = self.inet.run(
            "curl", "-sf", "--max-time", "5", f"http://{HUB}:{HTTP_PORT}/metrics", timeout=10
        )
        return parse_metrics(text.decode())

    def log(self, name: str) -> str:
        path = self.directory / name
        return path.read_text(errors="replace") if path.exists() else ""

    def diagnostics(self) -> str:
        """The tail of every log, for a failed assertion's message."""
        parts = []
        for path in sorted(self.directory.glob("*.log")):
            parts.append(f"--- {path.name}\n" + "\n".join(self.log(path.name).splitlines()[-15:]))
        return "\n".join(parts)

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        for ns in reversed(self.namespaces):
            ns.close()


def wait_for_text(path: Path, text: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    content = path.read_text(errors="replace") if path.exists() else "(no log)"
    raise RuntimeError(f"{path.name} never said {text!r}: {content}")


__all__ = ["NODES", "Scenario", "clean_stale", "missing_requirements", "wait_for_text"]


@contextlib.contextmanager
def built(
    directory: Path, heartbeat: float, probe_interval: float, probe_timeout: float
) -> Iterator[Scenario]:
    """A scenario built in `directory` (stale namespaces of an earlier run removed first),
    closed on the way out."""
    clean_stale()
    world = Scenario(directory)
    try:
        world.build(heartbeat, probe_interval, probe_timeout)
        yield world
    finally:
        world.close()


def egress_reasons(
    metrics: Samples, nodes: Iterable[str], targets: Iterable[str]
) -> dict[tuple[str, str], str | None]:
    """(node, target) → the reason reported now, None when up, "?" when not reported."""
    state: dict[tuple[str, str], str | None] = {}
    wanted = tuple(targets)
    for node in nodes:
        for target in wanted:
            up = sample(metrics, "preflight_egress_up", node=node, target=target)
            state[(node, target)] = None if up == 1.0 else "?"
    for (name, labels), value in metrics.items():
        label = dict(labels)
        key = (label.get("node", ""), label.get("target", ""))
        if name == "preflight_egress_failure" and value == 1.0 and key in state:
            state[key] = label["reason"]
    return state
