"""Benchmark: chaos, the long versions (issue 15 item 3), with what an operator would see.

Real processes throughout, on loopback and in the project's own network and mount
namespaces (the short versions are in `make test`: tests/e2e/test_collector_chaos.py,
test_network_chaos.py, test_hung_nas.py, whose harnesses this reuses):

a. The collector SIGKILLed under load: `--nodes` simulated agents (the realistic report of
   bench_ingest, from `--workers` load-generator processes, each node on its heartbeat,
   a failed report retried with jittered backoff like the agent's) plus 3 real agents;
   the collector is killed, stays dead `--gap` seconds, restarts: the time until it
   serves and until 50/90/99/100 % of the nodes are back.
b. The collector gone for `--minutes`: a real agent with the shipped timings (probe 15 s,
   heartbeat 30 s, max_backoff 30 s): its RSS and threads sampled all along, the retry
   delays from its log, and when a collector comes, how long until the node is up and
   how many reports arrive (one pending snapshot, not a backlog).
c. The DNS server dying mid-run: the egress scenario's dnsmasq is stopped (SIGSTOP, a
   silent server) for half of `minutes / 5`, then SIGKILLed for the other half, then a
   new one starts: reasons, verdicts, agents still reporting, recovery.
d. The proxy restarting: every node through tinyproxy; 3 instant restarts and one stop
   of `minutes / 20`: what the agents report during the gap, recovery time.
e. A hung NAS for `--minutes`: a real agent with a hanging FUSE volume (and a tmpfs one
   and a local HTTPS target): mount `stuck`, report ages (heartbeats on time), threads and
   RSS over the whole hang, blocked calls, verdict, recovery.

The parts run concurrently (b and e are the long ones; c, d, a run one after the other
beside them), so every figure is taken on a loaded machine: the load average is printed.
c, d and e need root (namespaces, FUSE). Prints one figure table at the end.

Run from the repository root:
  sudo .venv/bin/python -m bench.bench_chaos [--minutes 10] [--only a,b,c,d,e] [--nodes 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import yaml

from bench.bench_ingest import make_report, node_name
from preflight.v1 import report_pb2_grpc as pb_grpc
from tests.support.procs import (
    LoopbackProcesses,
    rss_kib,
    threads,
    wait_for,
    write_collector_config,
)
from tests.support.servers import free_port

Rows = list[tuple[str, str]]
FIGURES: dict[str, Rows] = {}
PRINT = threading.Lock()


def say(part: str, text: str) -> None:
    with PRINT:
        print(f"[{time.strftime('%H:%M:%S')} {part}] {text}", flush=True)


def get_json(url: str, timeout: float = 30) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def agent_config(
    path: Path, grpc_port: int, collector: dict[str, str] | None = None, **timings: str
) -> None:
    """A real agent with a closed loopback port as its only target (fails fast, no DNS)."""
    path.write_text(
        yaml.safe_dump(
            {
                "collector": {"address": f"127.0.0.1:{grpc_port}", **(collector or {})},
                **timings,
                "egress": {
                    "timeout": "2s",
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


# ------------------------------------------------------------------ a: killed under load


async def generate(spec: dict[str, Any]) -> dict[str, Any]:
    """Load-generator process: nodes [first, last) on their heartbeats until stdin closes.

    Like the agent, a node whose report fails keeps one pending report (the newest) and
    retries it after a jittered backoff (0.5 s, doubling, capped at max_backoff).
    """
    rng = random.Random(spec["first"])
    nodes = list(range(spec["first"], spec["last"]))
    options = [("grpc.enable_http_proxy", 0), ("grpc.max_reconnect_backoff_ms", 2000)]
    channels = [
        grpc.aio.insecure_channel(spec["address"], options=options)
        for _ in range(max(1, len(nodes) // 100))
    ]
    stubs = [pb_grpc.CollectorStub(c) for c in channels]
    heartbeat, max_backoff = spec["heartbeat"], spec["max_backoff"]
    counts = {"accepted": 0, "failed": 0}
    done = asyncio.Event()

    async def node(i: int) -> None:
        sequence, failures = 0, 0
        await asyncio.sleep(rng.uniform(0, heartbeat))
        while not done.is_set():
            sequence += 1
            report = make_report(node_name(i), node_name(i + 1), sequence, frozenset())
            try:
                await stubs[i % len(stubs)].Report(report, timeout=10)
            except grpc.aio.AioRpcError:
                counts["failed"] += 1
                failures += 1
                delay = min(max_backoff, 0.5 * 2 ** (failures - 1)) * rng.uniform(0.5, 1.0)
                await asyncio.sleep(delay)
                continue
            counts["accepted"] += 1
            failures = 0
            await asyncio.sleep(heartbeat * rng.uniform(0.9, 1.1))

    tasks = [asyncio.create_task(node(i)) for i in nodes]
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    done.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()
    return counts


def nodes_up(http: str) -> dict[str, bool]:
    return {n["node"]: bool(n["up"]) for n in get_json(f"{http}/api/v1/nodes")["nodes"]}


def part_a(tmp: Path, args: argparse.Namespace) -> Rows:
    n, heartbeat, gap = args.nodes, args.load_heartbeat, args.gap
    real = ("real-1", "real-2", "real-3")
    site = LoopbackProcesses(tmp)
    write_collector_config(
        site.collector_config,
        f"127.0.0.1:{site.grpc_port}",
        f"127.0.0.1:{site.http_port}",
        heartbeat,
        limits={"max_nodes": n + 10, "max_state_bytes": 1 << 30},
    )
    agent_config(
        site.agent_config,
        site.grpc_port,
        collector={"max_backoff": "5s"},
        probe_interval="2s",
        heartbeat_interval=f"{heartbeat}s",
    )
    http = f"http://127.0.0.1:{site.http_port}"
    generators: list[subprocess.Popen[str]] = []
    try:
        site.start_collector()
        wait_for(lambda: "verdicts" in get_json(f"{http}/api/v1/verdicts"), 60, "collector")
        share = -(-n // args.workers)
        for w in range(args.workers):
            spec = {
                "address": f"127.0.0.1:{site.grpc_port}",
                "first": w * share,
                "last": min(n, (w + 1) * share),
                "heartbeat": heartbeat,
                "max_backoff": 5.0,
            }
            generators.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.bench_chaos", "--generator", json.dumps(spec)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for node in real:
            site.start_agent(node)
        total = n + len(real)
        fill = wait_for(lambda: sum(nodes_up(http).values()) == total, 300, f"all {total} nodes up")
        say("a", f"{total} nodes up after {fill:.1f}s; steady for two heartbeats")
        time.sleep(2 * heartbeat)
        assert site.collector is not None
        rss_before = rss_kib(site.collector.pid) / 1024
        received0 = counter(http, "preflight_reports_received_total")
        time.sleep(heartbeat)
        rate = (counter(http, "preflight_reports_received_total") - received0) / heartbeat
        site.collector.kill()
        site.collector.wait(10)
        killed = time.monotonic()
        say("a", f"collector SIGKILLed ({rate:.0f} reports/s, {rss_before:.0f} MiB)")
        time.sleep(gap)
        site.start_collector()
        restarted = time.monotonic()
        serving = wait_for(lambda: get_json(f"{http}/api/v1/verdicts") is not None, 60, "serving")
        marks: dict[str, float] = {}
        real_back: float | None = None
        while time.monotonic() - restarted < 10 * heartbeat + 60:
            up = nodes_up(http)
            count = sum(up.values())
            now = time.monotonic() - restarted - serving
            for label, share_of in (("50 %", 0.5), ("90 %", 0.9), ("99 %", 0.99), ("100 %", 1.0)):
                if label not in marks and count >= share_of * total:
                    marks[label] = now
            if real_back is None and all(up.get(r) for r in real):
                real_back = now
            if count == total and real_back is not None:
                break
            time.sleep(0.5)
        rss_after = rss_kib(site.collector.pid) / 1024
        rejected = counter(http, "preflight_reports_rejected_total")
        agents_restarted = sum(p.poll() is not None for p in site.agents.values())
    finally:
        results = []
        for g in generators:
            out, _ = g.communicate("stop\n", timeout=120)
            results.append(json.loads(out.splitlines()[-1]))
        site.close()
    failed = sum(r["failed"] for r in results)
    rows: Rows = [
        ("nodes (simulated + real agents)", f"{n:,} + {len(real)}"),
        ("heartbeat (compressed) / collector dead", f"{heartbeat:g} s / {gap:g} s"),
        ("reports/s accepted before the kill", f"{rate:,.0f}"),
        (
            "collector RSS before the kill / once complete",
            f"{rss_before:.0f} / {rss_after:.0f} MiB",
        ),
        ("restart → serving HTTP", f"{serving:.2f} s"),
    ]
    for label in ("50 %", "90 %", "99 %", "100 %"):
        rows.append(
            (f"serving → {label} of the nodes up", f"{marks.get(label, float('nan')):.2f} s")
        )
    rows += [
        (
            "serving → the 3 real agents up",
            f"{real_back if real_back is not None else float('nan'):.2f} s",
        ),
        ("kill → every node up", f"{time.monotonic() - killed:.1f} s (incl. the {gap:g} s gap)"),
        ("simulated reports failed (gap, retried)", f"{failed:,}"),
        ("reports rejected by the restarted collector", f"{rejected:.0f}"),
        ("real agents exited", str(agents_restarted)),
    ]
    return rows


def counter(http: str, name: str) -> float:
    with urllib.request.urlopen(f"{http}/metrics", timeout=60) as response:
        total = 0.0
        for line in response.read().decode().splitlines():
            if line.startswith(name):
                total += float(line.rsplit(" ", 1)[1])
    return total


# ------------------------------------------------------------------ b: collector absent


def part_b(tmp: Path, args: argparse.Namespace) -> Rows:
    site = LoopbackProcesses(tmp)
    write_collector_config(
        site.collector_config, f"127.0.0.1:{site.grpc_port}", f"127.0.0.1:{site.http_port}", 30.0
    )
    agent_config(site.agent_config, site.grpc_port)  # shipped timings: 15 s / 30 s / 30 s
    http = f"http://127.0.0.1:{site.http_port}"
    node = "absent-1"
    try:
        site.start_agent(node)
        pid = site.agents[node].pid
        time.sleep(30)  # imports, first cycles
        samples: list[tuple[int, int]] = []
        until = time.monotonic() + args.minutes * 60
        while time.monotonic() < until:
            samples.append((rss_kib(pid), threads(pid)))
            time.sleep(5)
        log = site.agent_log(node)
        delays = [float(d) for d in re.findall(r"retrying in ([0-9.]+)s", log)]
        stamps = [
            time.mktime(time.strptime(s, "%Y-%m-%d %H:%M:%S")) + int(ms) / 1000
            for s, ms in re.findall(r"^(\S+ \S+),(\d+) WARNING .*retrying in", log, re.M)
        ]
        site.start_collector()
        started = time.monotonic()
        wait_for(lambda: get_json(f"{http}/api/v1/verdicts") is not None, 60, "serving")
        serving = time.monotonic() - started
        wait_for(
            lambda: any(
                n["node"] == node and n["up"] for n in get_json(f"{http}/api/v1/nodes")["nodes"]
            ),
            120,
            "the absent agent's report",
        )
        back = time.monotonic() - started - serving
        received = counter(http, "preflight_reports_received_total")
        sequence = get_json(f"{http}/api/v1/nodes/{node}")["report"]["sequence"]
        reconnected = "reachable again" in site.agent_log(node)
        alive = site.agents[node].poll() is None
    finally:
        site.close()
    rss = [r for r, _ in samples]
    thr = [t for _, t in samples]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return [
        (
            "collector absent",
            f"{args.minutes:g} min (agent: probe 15 s, heartbeat 30 s, max_backoff 30 s)",
        ),
        (
            "agent RSS first / min / max / last sample",
            f"{rss[0]:,} / {min(rss):,} / {max(rss):,} / {rss[-1]:,} KiB "
            f"({len(rss)} samples, 5 s apart)",
        ),
        ("agent threads min / max", f"{min(thr)} / {max(thr)}"),
        ("retries logged", str(len(delays))),
        (
            "retry delays min / median / max",
            f"{min(delays):.1f} / {sorted(delays)[len(delays) // 2]:.1f} / {max(delays):.1f} s "
            f"({len(set(delays))} distinct)",
        ),
        (
            "seconds between retries (log) min / max",
            f"{min(gaps):.1f} / {max(gaps):.1f} s" if gaps else "n/a",
        ),
        ("collector start → serving / → node up", f"{serving:.2f} s / {back:.2f} s"),
        (
            "reports received by the new collector when the node was up",
            f"{received:.0f} (report sequence {sequence})",
        ),
        ("agent logged 'reachable again' / still the same process", f"{reconnected} / {alive}"),
    ]


# ------------------------------------------------------------------ c, d: DNS and proxy


def scenario_state(
    world: Any, nodes: tuple[str, ...], targets: tuple[str, ...]
) -> tuple[dict[tuple[str, str], str | None], int]:
    """(node, target) → reason (None when up) and how many agents are up, from one scrape."""
    from tests.support.egress_scenario import egress_reasons

    metrics = world.scrape()
    state = egress_reasons(metrics, nodes, targets)
    agents = sum(1 for n in nodes if metrics.get(("preflight_agent_up", (("node", n),))) == 1.0)
    return state, agents


class Watch:
    """Samples a scenario every `every` s: reasons seen, agents up, egress verdicts."""

    def __init__(self, world: Any) -> None:
        from preflight.profile import load_profile
        from tests.support.egress_scenario import NODES

        self.world, self.nodes = world, NODES
        self.targets = tuple(t.name for t in load_profile("runai-2020").egress.targets)

    def until(
        self, done: Callable[[dict[tuple[str, str], str | None]], bool], limit: float
    ) -> tuple[float, set[str], int]:
        started = time.monotonic()
        reasons: set[str] = set()
        fewest = len(self.nodes)
        while True:
            state, agents = scenario_state(self.world, self.nodes, self.targets)
            reasons |= {r for r in state.values() if r}
            fewest = min(fewest, agents)
            if done(state):
                return time.monotonic() - started, reasons, fewest
            if time.monotonic() - started > limit:
                raise RuntimeError(f"not within {limit}s: {state}")
            time.sleep(0.2)

    def verdicts_become(self, want: str, limit: float = 180) -> float:
        """Seconds until egress_install and egress_runtime both read `want`."""
        started = time.monotonic()
        while True:
            v = self.world.verdicts()
            if v["egress_install"] == want and v["egress_runtime"] == want:
                return time.monotonic() - started
            if time.monotonic() - started > limit:
                raise RuntimeError(f"egress verdicts not {want} within {limit}s: {v}")
            time.sleep(0.2)

    def hold(self, seconds: float) -> tuple[set[str], int, set[tuple[str, str]]]:
        """Watches for `seconds`: reasons, fewest agents up, distinct egress verdicts."""
        until = time.monotonic() + seconds
        reasons: set[str] = set()
        fewest = len(self.nodes)
        verdicts: set[tuple[str, str]] = set()
        while time.monotonic() < until:
            state, agents = scenario_state(self.world, self.nodes, self.targets)
            reasons |= {r or "up" for r in state.values()}
            fewest = min(fewest, agents)
            v = self.world.verdicts()
            verdicts.add((v["egress_install"], v["egress_runtime"]))
            time.sleep(1.0)
        return reasons, fewest, verdicts


def all_up(state: dict[tuple[str, str], str | None]) -> bool:
    return all(r is None for r in state.values())


def all_down(state: dict[tuple[str, str], str | None]) -> bool:
    return all(r not in (None, "?") for r in state.values())


def part_c(tmp: Path, args: argparse.Namespace) -> Rows:
    from tests.support.egress_scenario import Scenario, clean_stale

    clean_stale()
    world = Scenario(tmp, variant="c")
    half = args.minutes * 60 / 10
    try:
        world.build(heartbeat=10.0, probe_interval=5.0, probe_timeout=3.0)
        world.start_agents()
        watch = Watch(world)
        took, _, _ = watch.until(all_up, 120)
        say("c", f"all up {took:.1f}s after start; dnsmasq SIGSTOP for {half:.0f}s")
        world.pause_dns()
        fault = time.monotonic()
        hung_detect, _, _ = watch.until(all_down, 120)
        verdict_fail = watch.verdicts_become("fail") + hung_detect
        spent = time.monotonic() - fault
        hung_reasons, hung_agents, hung_verdicts = watch.hold(max(0.0, half - spent))
        world.kill_dns()
        say("c", f"dnsmasq SIGKILLed for {half:.0f}s")
        dead_reasons, dead_agents, dead_verdicts = watch.hold(half)
        world.start_dns()
        back, _, _ = watch.until(all_up, 120)
        verdict_pass = watch.verdicts_become("pass") + back
    finally:
        world.close()
    return [
        (
            "3 nodes x 6 targets; probe / timeout / heartbeat",
            "5 s / 3 s / 10 s; resolv.conf timeout:1 attempts:2",
        ),
        ("dnsmasq SIGSTOP → every target down", f"{hung_detect:.1f} s"),
        ("dnsmasq SIGSTOP → egress verdicts fail", f"{verdict_fail:.1f} s"),
        (f"reasons while stopped ({half:.0f} s)", ", ".join(sorted(hung_reasons))),
        (f"reasons while killed ({half:.0f} s)", ", ".join(sorted(dead_reasons))),
        (
            "egress_install / egress_runtime during the outage",
            ", ".join(sorted({f"{a}/{b}" for a, b in hung_verdicts | dead_verdicts})),
        ),
        ("fewest agents up during the outage", f"{min(hung_agents, dead_agents)} of 3"),
        (
            "new dnsmasq → every target up / egress verdicts pass",
            f"{back:.1f} s / {verdict_pass:.1f} s",
        ),
    ]


def part_d(tmp: Path, args: argparse.Namespace) -> Rows:
    from tests.support.egress_scenario import HUB, PROXY_PORT, Scenario, clean_stale

    clean_stale()
    world = Scenario(tmp, variant="d")
    gap = args.minutes * 60 / 20
    rows: Rows = [
        ("3 nodes x 6 targets via tinyproxy; probe / timeout / heartbeat", "1 s / 3 s / 10 s")
    ]
    try:
        world.build(heartbeat=10.0, probe_interval=1.0, probe_timeout=3.0)
        world.start_proxy()
        world.start_agents(
            {"HTTPS_PROXY": f"http://{HUB}:{PROXY_PORT}", "NO_PROXY": f"{HUB},localhost"}
        )
        watch = Watch(world)
        watch.until(all_up, 120)
        watch.verdicts_become("pass")  # judged once before the first restart
        for i in range(3):
            started = time.monotonic()
            world.stop_proxy()
            world.start_proxy()
            took = time.monotonic() - started
            # Five probe intervals after it: any failure an agent saw reaches the collector.
            reasons, agents, verdicts = watch.hold(5.0)
            back, _, _ = watch.until(all_up, 120)
            failures = sorted(reasons - {"up"}) or ["none"]
            rows.append(
                (
                    f"instant restart {i + 1} ({took:.1f} s stop+start): reasons seen, verdicts",
                    f"{', '.join(failures)}; {', '.join(sorted({f'{a}/{b}' for a, b in verdicts}))}"
                    f"; all up {back:.1f} s after the window",
                )
            )
        say("d", f"tinyproxy stopped for {gap:.0f}s")
        world.stop_proxy()
        fault = time.monotonic()
        detect, _, _ = watch.until(all_down, 120)
        verdict_fail = watch.verdicts_become("fail") + detect
        reasons, agents, verdicts = watch.hold(max(0.0, gap - (time.monotonic() - fault)))
        world.start_proxy()
        back, _, _ = watch.until(all_up, 120)
        verdict_pass = watch.verdicts_become("pass") + back
    finally:
        world.close()
    return [
        *rows,
        (f"proxy stopped {gap:.0f} s: → every target down", f"{detect:.1f} s"),
        ("proxy stopped → egress verdicts fail", f"{verdict_fail:.1f} s"),
        ("reasons during the gap", ", ".join(sorted(reasons))),
        ("egress verdicts during the gap", ", ".join(sorted({f"{a}/{b}" for a, b in verdicts}))),
        ("fewest agents up during the gap", f"{agents} of 3"),
        (
            "proxy started → every target up / egress verdicts pass",
            f"{back:.1f} s / {verdict_pass:.1f} s",
        ),
    ]


# ------------------------------------------------------------------ e: hung NAS


def part_e(tmp: Path, args: argparse.Namespace) -> Rows:
    from tests.support.hung_nas import NODE, HungNas

    heartbeat, interval, timeout = 10.0, 5.0, 2.0
    nas = HungNas(tmp, heartbeat, interval, timeout)
    path = str(nas.nas)
    try:
        nas.wait_started(120)
        pid = nas.agent_pid()
        nas.hang()
        started = time.monotonic()
        wait_for(lambda: nas.mounts()[path]["state"] == "MOUNT_STATE_STUCK", 120, "stuck")
        stuck_after = time.monotonic() - started
        ages: list[float] = []
        rss: list[int] = []
        thr: list[int] = []
        other_ok = egress_up = polls = 0
        first_seq = int(nas.detail()["report"]["sequence"])
        http = nas.metrics_url.rsplit("/", 1)[0]
        received0 = counter(http, "preflight_reports_received_total")
        until = started + args.minutes * 60
        while time.monotonic() < until:
            detail = nas.detail()
            polls += 1
            ages.append(detail["last_report_age_seconds"])
            mounts = {m["path"]: m for m in detail["report"]["mounts"]}
            other_ok += mounts[str(nas.ok)]["state"] == "MOUNT_STATE_MOUNTED"
            egress_up += all(e["outcome"] == "OUTCOME_UP" for e in detail["report"]["egress"])
            rss.append(rss_kib(pid))
            thr.append(threads(pid))
            time.sleep(2)
        last_seq = int(nas.detail()["report"]["sequence"])
        received = counter(http, "preflight_reports_received_total") - received0
        verdict = nas.verdict("shared_volume")
        calls = nas.calls_while_hung()
        message = nas.mounts()[path].get("message", "")
        nas.release()
        released = time.monotonic()
        wait_for(lambda: nas.mounts()[path]["state"] == "MOUNT_STATE_MOUNTED", 120, "mounted")
        back = time.monotonic() - released
        up = counter(http, f'preflight_agent_up{{node="{NODE}"}}')
    finally:
        nas.close()
    late = sum(a > heartbeat + interval for a in ages)
    return [
        (
            "NAS hung",
            f"{args.minutes:g} min; probe {interval:g} s, heartbeat {heartbeat:g} s, "
            f"mounts.timeout {timeout:g} s",
        ),
        ("hang → `stuck` at the collector", f"{stuck_after:.1f} s"),
        (
            "report age max / polls over heartbeat + probe",
            f"{max(ages):.1f} s / {late} of {len(ages)}",
        ),
        (
            "reports accepted during the hang (one per heartbeat would be)",
            f"{received:.0f} ({args.minutes * 60 / heartbeat:.0f}); "
            f"sequence {first_seq} → {last_seq}",
        ),
        ("tmpfs volume mounted / egress target up, polls", f"{other_ok} / {egress_up} of {polls}"),
        ("agent threads min / max", f"{min(thr)} / {max(thr)}"),
        ("agent RSS first / max / last", f"{rss[0]:,} / {max(rss):,} / {rss[-1]:,} KiB"),
        ("filesystem calls blocked on the NAS", str(calls)),
        ("mount message at the end", message[:90]),
        ("shared_volume verdict", f"{verdict['status']}"),
        ("released → `mounted` at the collector", f"{back:.1f} s (agent_up {up:g})"),
    ]


# ------------------------------------------------------------------ driver


PARTS: dict[str, tuple[str, Callable[[Path, argparse.Namespace], Rows]]] = {
    "a": ("collector SIGKILLed under load", part_a),
    "b": ("collector gone", part_b),
    "c": ("DNS server dying", part_c),
    "d": ("proxy restarting", part_d),
    "e": ("hung NAS", part_e),
}


def run_parts(keys: list[str], tmp: Path, args: argparse.Namespace) -> None:
    for key in keys:
        title, part = PARTS[key]
        directory = tmp / key
        directory.mkdir()
        say(key, f"start: {title}")
        try:
            FIGURES[key] = part(directory, args)
        except Exception:  # a failed part is reported, the others go on
            FIGURES[key] = [("FAILED", traceback.format_exc().strip().splitlines()[-1])]
            say(key, traceback.format_exc())
        say(key, "done")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--only", default="a,b,c,d,e")
    parser.add_argument("--nodes", type=int, default=2000, help="part a: simulated agents")
    parser.add_argument("--workers", type=int, default=2, help="part a: generator processes")
    parser.add_argument("--load-heartbeat", type=float, default=10.0, help="part a")
    parser.add_argument("--gap", type=float, default=10.0, help="part a: seconds dead")
    parser.add_argument("--generator", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generator:
        print(json.dumps(asyncio.run(generate(json.loads(args.generator)))), flush=True)
        return
    only = [k for k in args.only.split(",") if k]
    unknown = set(only) - set(PARTS)
    if unknown:
        parser.error(f"--only: unknown part(s) {', '.join(sorted(unknown))}")
    if os.geteuid() != 0 and set(only) & {"c", "d", "e"}:
        parser.error("parts c, d and e need root (network and mount namespaces, FUSE)")
    began = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()
    # The long parts each get a thread; the shorter ones share one, one after the other.
    lanes = [[k] for k in only if k in "be"] + [[k for k in "cda" if k in only]]
    with tempfile.TemporaryDirectory(prefix="pf-chaos-") as tmp:
        workers = [
            threading.Thread(target=run_parts, args=(lane, Path(tmp), args))
            for lane in lanes
            if lane
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    print(
        f"\n# bench_chaos, {began}, {os.cpu_count()} CPUs, --minutes {args.minutes:g}, "
        f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}\n"
    )
    print("| part | figure | value |")
    print("| --- | --- | --- |")
    for key in only:
        for figure, value in FIGURES.get(key, [("not run", "")]):
            print(f"| {key}. {PARTS[key][0]} | {figure} | {value} |")


if __name__ == "__main__":
    main()
