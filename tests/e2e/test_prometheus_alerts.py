"""End to end: real Prometheus and Alertmanager on a real collector fed by real agents.

Two `preflight-agent` processes probe two local HTTPS servers (private trustme CA via
SSL_CERT_FILE) and push to a `preflight-collector` process; a real Prometheus scrapes it
every second with the shipped rules loaded and sends alerts to a real Alertmanager,
which posts to a webhook receiver this test runs on loopback. Stopping one HTTPS server
must make PreflightEgressBroken reach the webhook for both nodes, naming node and target.

The shipped `for:` durations (1m to 10m) would make this test take minutes, so it loads
a generated copy of deploy/prometheus/preflight-rules.yaml with every `for:` set to
FOR_SECONDS; the expressions, labels and annotations are the shipped ones. The real
durations are covered by the promtool unit tests (tests/prometheus/*.test.yaml).

The break-to-notification time is printed with its parts; docs/performance.md explains
them. The same Prometheus answers every Grafana dashboard query (must parse, and return
data unless the dashboard marks it as possibly empty).
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
import yaml

from preflight.v1 import report_pb2_grpc as pb_grpc
from tests.support.capacity_cluster import A100, H100, capacity_reports
from tests.support.dashboard import dashboard_query_specs
from tests.support.metrics import sample, scrape
from tests.support.procs import HttpsServer, start, stop, wait_for
from tests.support.profiles import local_target, write_profile
from tests.support.promql import RULES_FILE
from tests.support.servers import free_port

pytestmark = pytest.mark.e2e

PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
FOR_SECONDS = 5
KUBE_STATE_METRICS = (
    Path(__file__).resolve().parents[1] / "fixtures" / "prometheus" / "kube-state-metrics.prom"
)
SCRAPE_INTERVAL = 1.0
PROBE_INTERVAL = 0.5
PROBE_TIMEOUT = 1.5
HEARTBEAT = 5.0
GROUP_WAIT = 1.0
NODES = ("node-1", "node-2")
TARGETS = ("site-one", "site-two")
BROKEN = "site-two"


def shortened_rules(source: Path, seconds: int) -> dict[str, Any]:
    """The shipped rules with every `for:` replaced by `seconds` (expressions untouched)."""
    doc = yaml.safe_load(source.read_text(encoding="utf-8"))
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = f"{seconds}s"
    return dict(doc)


class Webhook:
    """Alertmanager's webhook receiver: records every POST with its arrival time."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.received.append((time.time(), json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def firing(self, alertname: str) -> list[tuple[float, dict[str, Any]]]:
        """(arrival, alert) of every firing alert named `alertname` received so far."""
        with self.lock:
            return [
                (at, alert)
                for at, payload in self.received
                for alert in payload["alerts"]
                if alert["status"] == "firing" and alert["labels"]["alertname"] == alertname
            ]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class StaticExposition:
    """Serves one exposition file at /metrics, as kube-state-metrics would (a fixed state)."""

    def __init__(self, path: Path) -> None:
        body = path.read_bytes()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Stack:
    tmp: Path
    servers: dict[str, HttpsServer] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    webhook: Webhook | None = None
    kube_state_metrics: StaticExposition | None = None
    collector_port: int = 0
    grpc_port: int = 0
    prometheus_port: int = 0

    def query(self, promql: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.prometheus_port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": promql}
        )
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                answer: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as error:  # 400/422 carry the parse error as JSON
            body = error.read()
            try:
                answer = json.loads(body)
            except ValueError:
                # A starting Prometheus answers 503 in plain text: not ready yet, poll on.
                raise ConnectionError(
                    f"Prometheus not ready ({error.code}): {body[:80]!r}"
                ) from None
        return answer

    def result(self, promql: str) -> list[dict[str, Any]]:
        answer = self.query(promql)
        assert answer["status"] == "success", answer
        data: list[dict[str, Any]] = answer["data"]["result"]
        return data

    def logs(self) -> str:
        parts = []
        for log in sorted(self.tmp.glob("*.log")):
            parts.append(f"--- {log.name}\n" + log.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def close(self) -> None:
        for process in reversed(list(self.processes.values())):
            stop(process)
        for server in self.servers.values():
            server.stop()
        if self.webhook is not None:
            self.webhook.stop()
        if self.kube_state_metrics is not None:
            self.kube_state_metrics.stop()


def _write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _start_stack(s: Stack) -> None:
    tmp = s.tmp
    ca = trustme.CA()
    ca_file = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    s.servers = {name: HttpsServer(ca) for name in TARGETS}
    s.webhook = Webhook()
    s.kube_state_metrics = StaticExposition(KUBE_STATE_METRICS)

    grpc_port, s.collector_port = free_port(), free_port()
    # The profile lists the local sites: collector and agents probe nothing else.
    profile = write_profile(
        tmp / "profile.yaml", [local_target(n, server.port) for n, server in s.servers.items()]
    )
    s.grpc_port = grpc_port
    collector_config = _write_yaml(
        tmp / "collector.yaml",
        {
            "listen": {"grpc": f"127.0.0.1:{grpc_port}", "http": f"127.0.0.1:{s.collector_port}"},
            "heartbeat_interval": f"{HEARTBEAT}s",
            "kubernetes": {"mode": "none"},
            "profile": str(profile),
        },
    )
    agent_config = _write_yaml(
        tmp / "agent.yaml",
        {
            "collector": {"address": f"127.0.0.1:{grpc_port}", "max_backoff": "1s"},
            "profile": str(profile),
            "probe_interval": f"{PROBE_INTERVAL}s",
            "heartbeat_interval": f"{HEARTBEAT}s",
            "egress": {
                "timeout": f"{PROBE_TIMEOUT}s",
                "targets": [
                    {"name": name, "host": "localhost", "port": server.port, "proxy": "none"}
                    for name, server in s.servers.items()
                ],
            },
        },
    )
    rules = _write_yaml(tmp / "rules.yaml", shortened_rules(RULES_FILE, FOR_SECONDS))
    am_port, s.prometheus_port = free_port(), free_port()
    am_config = _write_yaml(
        tmp / "alertmanager.yaml",
        {
            "route": {
                "receiver": "webhook",
                "group_by": ["alertname", "node", "target"],
                "group_wait": f"{GROUP_WAIT:g}s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [
                {
                    "name": "webhook",
                    "webhook_configs": [
                        {"url": f"http://127.0.0.1:{s.webhook.port}/", "send_resolved": True}
                    ],
                }
            ],
        },
    )
    prometheus_config = _write_yaml(
        tmp / "prometheus.yaml",
        {
            "global": {
                "scrape_interval": f"{SCRAPE_INTERVAL:g}s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(rules)],
            "alerting": {
                "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
            },
            "scrape_configs": [
                {
                    "job_name": "preflight",
                    "static_configs": [{"targets": [f"127.0.0.1:{s.collector_port}"]}],
                },
                {
                    "job_name": "kube-state-metrics",
                    "static_configs": [{"targets": [f"127.0.0.1:{s.kube_state_metrics.port}"]}],
                },
            ],
        },
    )

    def spawn(name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 — lives with the process
        s.processes[name] = subprocess.Popen(argv, stdout=log, stderr=log, env=env)

    spawn(
        "alertmanager",
        [
            ALERTMANAGER,
            f"--config.file={am_config}",
            f"--storage.path={tmp / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
    )
    spawn(
        "prometheus",
        [
            PROMETHEUS,
            f"--config.file={prometheus_config}",
            f"--storage.tsdb.path={tmp / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{s.prometheus_port}",
        ],
    )
    s.processes["collector"] = start(
        "preflight-collector", "--config", str(collector_config), log=tmp / "collector.log"
    )
    env = {**os.environ, "SSL_CERT_FILE": str(ca_file)}
    for node in NODES:
        s.processes[node] = start(
            "preflight-agent",
            "--config",
            str(agent_config),
            "--node-name",
            node,
            env=env,
            log=tmp / f"agent-{node}.log",
        )
    for name in ("alertmanager", "prometheus"):
        process = s.processes[name]
        assert process.poll() is None, f"{name} exited at start:\n{s.logs()}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    for program, package in (
        (PROMETHEUS, "prometheus"),
        (ALERTMANAGER, "prometheus-alertmanager"),
    ):
        if shutil.which(program) is None:
            pytest.skip(f"{program} not installed (Debian package {package})")
    s = Stack(tmp_path_factory.mktemp("prometheus-e2e"))
    try:
        _start_stack(s)

        def all_up_in_prometheus() -> bool:
            series = s.result("preflight_egress_up == 1")
            return len(series) == len(NODES) * len(TARGETS)

        try:
            took = wait_for(
                all_up_in_prometheus, 45, "Prometheus sees every node reach every target"
            )
        except AssertionError:
            print(s.logs())
            raise
        print(f"stack up: Prometheus sees all targets up {took:.1f}s after the start")
        # GPU capacity the local agents cannot have: the 3-node, 2-model cluster's reports
        # (agent GPU code + fake NVML), so the capacity panels join real series.
        with grpc.insecure_channel(f"127.0.0.1:{s.grpc_port}") as channel:
            stub = pb_grpc.CollectorStub(channel)
            for report in capacity_reports():
                stub.Report(report, timeout=10)
        yield s
    finally:
        s.close()


@pytest.mark.timeout(150)
def test_egress_break_fires_alert_to_webhook(stack: Stack) -> None:
    webhook = stack.webhook
    assert webhook is not None
    # Healthy: nothing about egress has fired (other alerts, e.g. standalone mode's
    # unknown verdicts, may).
    assert webhook.firing("PreflightEgressBroken") == []
    assert stack.result('ALERTS{alertname="PreflightEgressBroken"}') == []

    metrics_url = f"http://127.0.0.1:{stack.collector_port}/metrics"
    broke_at = time.time()
    stack.servers[BROKEN].stop()

    def collector_sees_break() -> bool:
        metrics = scrape(metrics_url)
        return all(
            sample(metrics, "preflight_egress_up", node=n, target=BROKEN) == 0.0 for n in NODES
        )

    collector_after = wait_for(collector_sees_break, 20, "collector exposes the break")

    def notified() -> bool:
        nodes = {a["labels"]["node"] for _, a in webhook.firing("PreflightEgressBroken")}
        return nodes == set(NODES)

    try:
        wait_for(notified, 45, "PreflightEgressBroken reaches the webhook for both nodes")
    except AssertionError:
        print(stack.logs())
        raise
    firing = webhook.firing("PreflightEgressBroken")
    for _, alert in firing:
        labels = alert["labels"]
        assert labels["target"] == BROKEN, alert
        assert labels["node"] in NODES, alert
        assert labels["severity"] == "warning", alert
        assert labels["job"] == "preflight", alert
        annotations = alert["annotations"]
        assert labels["node"] in annotations["summary"] and BROKEN in annotations["summary"]
        # The description's template query found the current reason of the stopped server.
        assert "connect_refused" in annotations["description"], annotations
        assert annotations["runbook_url"].endswith("#preflightegressbroken")
    # The healthy target never alerted.
    assert all(a["labels"]["target"] == BROKEN for _, a in firing)

    # Parts, from the clocks of the processes involved (one machine, one wall clock).
    first_arrival = min(at for at, _ in firing)
    last_arrival = max(at for at, _ in firing)
    rules = stack.result('ALERTS{alertname="PreflightEgressBroken",alertstate="firing"}')
    assert {r["metric"]["node"] for r in rules} == set(NODES)
    active = [
        a
        for a in json.load(
            urllib.request.urlopen(
                f"http://127.0.0.1:{stack.prometheus_port}/api/v1/alerts", timeout=10
            )
        )["data"]["alerts"]
        if a["labels"]["alertname"] == "PreflightEgressBroken"
    ]
    pending_at = min(_rfc3339(a["activeAt"]) for a in active)
    fired_at = min(_rfc3339(a["startsAt"]) for _, a in firing)
    print(
        "break -> notification: "
        f"first {first_arrival - broke_at:.1f}s, both nodes {last_arrival - broke_at:.1f}s "
        f"(for: {FOR_SECONDS}s, scrape/eval 1s, probe interval {PROBE_INTERVAL}s, "
        f"probe timeout {PROBE_TIMEOUT}s, group_wait {GROUP_WAIT:g}s)\n"
        f"  collector exposes the break after {collector_after:.1f}s (probe + push; polled)\n"
        f"  rule pending after {pending_at - broke_at:.1f}s (scrape + evaluation)\n"
        f"  rule firing after {fired_at - broke_at:.1f}s (+ for: {FOR_SECONDS}s)\n"
        f"  webhook notified after {first_arrival - broke_at:.1f}s "
        f"(+ send to Alertmanager, group_wait {GROUP_WAIT:g}s, webhook POST)"
    )
    assert broke_at < pending_at <= fired_at <= first_arrival
    assert fired_at - pending_at >= FOR_SECONDS - 1  # `for:` really held it pending


def _rfc3339(stamp: str) -> float:
    # Go writes up to nanoseconds; Python parses up to microseconds.
    head, dot, tail = stamp.partition(".")
    if dot:
        digits = "".join(c for c in tail if c.isdigit())
        zone = tail[len(digits) :]
        stamp = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@pytest.mark.timeout(60)
def test_every_dashboard_query_runs_on_real_prometheus(stack: Stack) -> None:
    # rate(...[1m]) needs two samples of the counter: a few scrapes after start-up.
    wait_for(
        lambda: bool(stack.result("sum(rate(preflight_reports_received_total[1m]))")),
        20,
        "two scrapes of the report counter",
    )
    problems = []
    for spec in dashboard_query_specs():
        answer = stack.query(spec.expr)
        if answer.get("status") != "success":
            problems.append(f"{spec.panel}/{spec.ref_id}: {answer.get('error')} in {spec.expr}")
        elif not spec.may_be_empty and not answer["data"]["result"]:
            problems.append(f"{spec.panel}/{spec.ref_id}: no data for {spec.expr}")
    assert not problems, "\n".join(problems)


@pytest.mark.timeout(60)
def test_capacity_rows_join_kube_state_metrics(stack: Stack) -> None:
    panel = next(q for q in dashboard_query_specs() if q.panel == "GPUs by model")

    def by_model(ref_id: str) -> dict[str, float]:
        spec = next(
            q for q in dashboard_query_specs() if q.panel == panel.panel and q.ref_id == ref_id
        )
        return {r["metric"]["model"]: float(r["value"][1]) for r in stack.result(spec.expr)}

    wait_for(lambda: len(by_model("A")) == 2 and len(by_model("D")) == 2, 20, "capacity scraped")
    assert by_model("A") == {A100: 8.0, H100: 8.0}  # NVML lists a100-1 and h100-1
    # Allocatable and requested nvidia.com/gpu from kube-state-metrics, joined per node to
    # the model NVML names; a100-2 (NVML: version mismatch) has no preflight_gpu_info, so
    # its GPUs stay out of the per-model sums rather than guessed.
    assert by_model("D") == {A100: 8.0, H100: 8.0}
    assert by_model("E") == {A100: 4.0, H100: 0.0}  # h100-1: no GPU request, still a row
