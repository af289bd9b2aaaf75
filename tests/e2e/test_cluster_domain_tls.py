"""cluster_domain_tls and mirrors end to end: real processes in one network namespace.

Inside the namespace (its own loopback, its own /etc/hosts mapping the cluster domain and
the mirror host to 127.0.0.1, as `ip netns exec` gives a node its own name resolution):

- an HTTPS origin on :443 serving the cluster domain with a certificate from a trustme CA;
- two registry mirrors on :5001 (401 with WWW-Authenticate, as a registry's /v2/ answers)
  and :5002 (401 without the header: not a registry);
- a collector with `cluster_domain` and `mirrors` set, judging a profile with
  cluster_domain_tls and two registry targets whose profile hosts do not resolve at all;
- a real agent that trusts the CA only through its extra CA bundle (egress.ca_file).

The certificate is then replaced (the origin restarted on the same port): one for another
name fails for that reason, one expiring in five days warns.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.egress_scenario import wait_for_text
from tests.support.metrics import Samples, parse_metrics, sample
from tests.support.netns import Netns, missing_requirements
from tests.support.procs import BIN, write_collector_config
from tests.support.profiles import write_profile
from tests.support.servers import Pki

pytestmark = pytest.mark.e2e

DOMAIN = "runai.pf-cluster.test"
MIRROR_HOST = "mirror.pf-cluster.test"
GRPC, HTTP = "127.0.0.1:9751", "127.0.0.1:9750"
HEARTBEAT = 3.0
REGISTRY = {"expect_status": [200, 401], "require_header_for": {401: "www-authenticate"}}
WAIT = 30.0


def registry_target(name: str) -> dict[str, Any]:
    # The profile host is never resolvable here: only the mirror can make it reachable.
    return {"name": name, "host": f"{name}.example", "path": "/v2/", "phase": "install", **REGISTRY}


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.pki = Pki.create(tmp)
        self.ns = Netns(
            f"pf-cdt-{os.getpid()}",
            hosts=f"127.0.0.1 localhost\n127.0.0.1 {DOMAIN} {MIRROR_HOST}\n",
        )
        self.domain_origin: subprocess.Popen[bytes] | None = None
        self.generation = 0

    def start(self) -> None:
        self.serve_domain(DOMAIN, days=90)
        cert, key = self.pki.write_leaf(self.tmp, "mirror", MIRROR_HOST)
        auth = [("WWW-Authenticate", f'Bearer realm="https://{MIRROR_HOST}/token"')]
        self._origins(
            "mirrors",
            cert,
            key,
            [
                {"port": 5001, "path": "/v2/", "status": 401, "headers": auth},
                {"port": 5002, "path": "/v2/", "status": 401, "headers": []},
            ],
        )
        profile = write_profile(
            self.tmp / "profile.yaml",
            [registry_target("registry-a"), registry_target("registry-b")],
            name="e2e-cluster-domain",
            hysteresis={"fail_after": 1, "pass_after": 1},
            requirements={"cluster_domain_tls": ["runtime"], "egress_install": ["install"]},
        )
        config = write_collector_config(
            self.tmp / "collector.yaml",
            GRPC,
            HTTP,
            HEARTBEAT,
            profile=str(profile),
            cluster_domain=DOMAIN,
            mirrors={"registry-a": f"{MIRROR_HOST}:5001", "registry-b": f"{MIRROR_HOST}:5002"},
        )
        self.ns.spawn(
            str(BIN / "preflight-collector"),
            "--config",
            str(config),
            log=self.tmp / "collector.log",
        )
        deadline = time.monotonic() + WAIT
        while True:
            try:
                self.get("/healthz")
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"collector not serving\n{self.logs()}") from None
                time.sleep(0.2)
        agent = self.tmp / "agent.yaml"
        agent.write_text(
            yaml.safe_dump(
                {
                    "collector": {"address": GRPC, "max_backoff": "1s"},
                    "probe_interval": "1s",
                    "heartbeat_interval": f"{HEARTBEAT}s",
                    # The test CA only here: SSL_CERT_FILE below is a store without it.
                    "egress": {"timeout": "3s", "ca_file": str(self.pki.ca_file)},
                }
            )
        )
        self.ns.spawn(
            "env",
            "-u",
            "https_proxy",
            "-u",
            "HTTPS_PROXY",
            f"SSL_CERT_FILE={self.pki.rogue_file}",
            str(BIN / "preflight-agent"),
            "--config",
            str(agent),
            "--node-name",
            "system-1",
            "--profile",
            str(profile),
            log=self.tmp / "agent.log",
        )

    def _origins(
        self, stem: str, cert: Path, key: Path, origins: list[dict[str, Any]]
    ) -> subprocess.Popen[bytes]:
        spec = self.tmp / f"{stem}.json"
        for origin in origins:
            origin.setdefault("ip", "127.0.0.1")
        spec.write_text(json.dumps({"cert": str(cert), "key": str(key), "origins": origins}))
        log = self.tmp / f"{stem}.log"
        process = self.ns.spawn(
            str(BIN / "python"), "-m", "tests.support.egress_origins", str(spec), log=log
        )
        wait_for_text(log, "ready")
        return process

    def serve_domain(self, name: str, days: float) -> None:
        """(Re)starts the cluster-domain origin on :443 with a leaf for `name`."""
        if self.domain_origin is not None:
            self.domain_origin.terminate()
            self.domain_origin.wait(10)
        self.generation += 1
        now = dt.datetime.now(dt.UTC)
        leaf = self.pki.ca.issue_cert(
            name, not_before=now - dt.timedelta(days=1), not_after=now + dt.timedelta(days=days)
        )
        cert, key = (
            self.tmp / f"domain{self.generation}.pem",
            self.tmp / f"domain{self.generation}.key",
        )
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
        self.domain_origin = self._origins(
            f"domain{self.generation}", cert, key, [{"port": 443, "path": "/", "status": 200}]
        )

    def get(self, path: str) -> Any:
        out = self.ns.run("curl", "-sf", "--max-time", "5", f"http://{HTTP}{path}", timeout=10)
        if path == "/healthz":
            return out.decode()
        return json.loads(out) if path.startswith("/api/") else out.decode()

    def verdict(self, requirement: str) -> dict[str, Any]:
        verdicts = self.get("/api/v1/verdicts")["verdicts"]
        found: dict[str, Any] = next(v for v in verdicts if v["requirement"] == requirement)
        return found

    def wait_verdict(
        self, status: str, words: str, requirement: str = "cluster_domain_tls"
    ) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                last = self.verdict(requirement)
            except (RuntimeError, StopIteration, ValueError):
                last = {}
            if last.get("status") == status and words in last.get("reason", ""):
                return last
            time.sleep(0.3)
        raise AssertionError(f"not {status} with {words!r} within {WAIT}s: {last}\n{self.logs()}")

    def metrics(self) -> Samples:
        return parse_metrics(self.get("/metrics"))

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-12:])
            for p in sorted(self.tmp.glob("*.log"))
        )

    def close(self) -> None:
        self.ns.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    why = missing_requirements()
    if why:
        pytest.skip(why)
    c = Cluster(tmp_path)
    try:
        c.start()
        yield c
    finally:
        c.close()


@pytest.mark.timeout(180)
def test_cluster_domain_certificate_passes_then_fails_for_the_name_then_warns(
    cluster: Cluster,
) -> None:
    passed = cluster.wait_verdict("pass", f"{DOMAIN} serves a trusted certificate")
    assert "89 days left" in passed["reason"] or "90 days left" in passed["reason"]
    assert passed["targets"] == ["cluster-domain"]

    swapped = time.monotonic()
    cluster.serve_domain(f"other.{DOMAIN}", days=90)
    failed = cluster.wait_verdict("fail", "certificate for another name")
    assert failed["nodes"] == ["system-1"] and f"https://{DOMAIN}/" in failed["reason"]
    to_fail = time.monotonic() - swapped

    swapped = time.monotonic()
    cluster.serve_domain(DOMAIN, days=5)
    warned = cluster.wait_verdict("warn", f"the certificate of {DOMAIN} expires in")
    # A figure for the record, never asserted (probe interval 1 s, re-judged every 1 s).
    print(
        f"certificate swap → verdict: fail after {to_fail:.2f}s, "
        f"warn after {time.monotonic() - swapped:.2f}s"
    )
    days = float(warned["reason"].split("expires in ")[1].split(" days")[0])
    assert 4.0 < days <= 5.0, warned


@pytest.mark.timeout(180)
def test_mirrors_are_probed_with_registry_semantics_and_shown_as_mirrored(
    cluster: Cluster,
) -> None:
    up_a = ("preflight_egress_up", (("node", "system-1"), ("target", "registry-a")))
    deadline = time.monotonic() + WAIT
    metrics: Samples = {}
    while time.monotonic() < deadline:
        metrics = cluster.metrics()
        if (
            metrics.get(up_a) == 1.0
            and sample(metrics, "preflight_egress_up", node="system-1", target="registry-b") == 0.0
        ):
            break
        time.sleep(0.3)
    assert metrics.get(up_a) == 1.0, cluster.logs()
    # The same expectations as the profile's registry: a 401 without the header is no registry.
    assert (
        sample(
            metrics,
            "preflight_egress_failure",
            node="system-1",
            target="registry-b",
            reason="http_unexpected_status",
        )
        == 1.0
    )
    for name, port in (("registry-a", 5001), ("registry-b", 5002)):
        info = sample(
            metrics,
            "preflight_egress_target_mirror_info",
            target=name,
            origin=f"{name}.example:443",
            mirror=f"{MIRROR_HOST}:{port}",
        )
        assert info == 1.0
    api = cluster.get("/api/v1/verdicts")
    assert [m["target"] for m in api["mirrors"]] == ["registry-a", "registry-b"]
    # Judged once both probes are in (the collector re-judges every second).
    install = cluster.wait_verdict(
        "fail",
        f"system-1 → registry-b (mirror {MIRROR_HOST}:5002): http_unexpected_status",
        "egress_install",
    )
    assert install["targets"] == ["registry-b"], install
    targets = {t["target"]: t for t in cluster.get("/api/v1/nodes/system-1")["targets"]}
    assert targets["registry-a"]["mirror"] == f"{MIRROR_HOST}:5001"
    assert targets["registry-a"]["http_status"] == 401
    assert targets["cluster-domain"]["mirror"] is None
    page = cluster.get("/")
    assert f"mirror {MIRROR_HOST}:5001" in page and f"mirror {MIRROR_HOST}:5002" in page
