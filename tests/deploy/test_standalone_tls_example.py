"""deploy/examples/standalone-tls as an operator would use it: real openssl, real processes.

make-certs.sh makes the CA, the collector's pair and the token; the example configs,
pointed at those files, run a collector and an agent that reports over TLS with the
token. Re-running the script rotates the leaf under the running collector.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from tests.support.metrics import sample, scrape
from tests.support.procs import start, stop, wait_for
from tests.support.servers import free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "standalone-tls"
PLACEHOLDER = "/etc/preflight-standalone"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl missing")


def make_certs(out: Path) -> None:
    subprocess.run(
        ["sh", str(EXAMPLE / "make-certs.sh"), str(out)],
        check=True,
        capture_output=True,
        timeout=60,
    )


def example(name: str, files: Path, **overrides: object) -> dict[str, object]:
    text = (EXAMPLE / name).read_text().replace(PLACEHOLDER, str(files))
    config: dict[str, object] = yaml.safe_load(text)
    config.update(overrides)
    return config


def serial(cert: Path) -> int:
    result = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-serial"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(result.stdout.strip().removeprefix("serial="), 16)


@pytest.mark.timeout(90)
def test_example_collector_and_agent_talk_tls_with_the_token(tmp_path: Path) -> None:
    files = tmp_path / "pki"
    make_certs(files)
    assert (files / "tls.key").stat().st_mode & 0o077 == 0
    assert (files / "ca.key").stat().st_mode & 0o077 == 0
    grpc_port, http_port = free_port(), free_port()
    collector_config = example(
        "collector.yaml", files, listen={"grpc": f"127.0.0.1:{grpc_port}",
                                         "http": f"127.0.0.1:{http_port}"},
        heartbeat_interval="2s",
    )  # fmt: skip
    agent_config = example("agent.yaml", files, probe_interval="1s", heartbeat_interval="2s")
    agent_config["egress"] = {"targets": []}
    collector_section = agent_config["collector"]
    assert isinstance(collector_section, dict)
    collector_section["address"] = f"127.0.0.1:{grpc_port}"
    collector_section["max_backoff"] = "1s"
    (tmp_path / "collector.yaml").write_text(yaml.safe_dump(collector_config))
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(agent_config))
    collector = start(
        "preflight-collector", "--config", str(tmp_path / "collector.yaml"),
        log=tmp_path / "collector.log",
    )  # fmt: skip
    agent = start(
        "preflight-agent", "--config", str(tmp_path / "agent.yaml"), "--node-name", "node-s",
        log=tmp_path / "agent.log",
    )  # fmt: skip
    url = f"http://127.0.0.1:{http_port}/metrics"
    try:
        wait_for(lambda: sample(scrape(url), "preflight_agent_up", node="node-s") == 1.0, 30,
                 "the example agent reports")  # fmt: skip
        before = serial(files / "tls.crt")
        make_certs(files)  # rotation: the CA stays, the leaf is re-issued
        assert serial(files / "tls.crt") != before
        received = sample(scrape(url), "preflight_reports_received_total") or 0.0
        # The agent keeps reporting; a new agent connection would get the new leaf.
        wait_for(lambda: (sample(scrape(url), "preflight_reports_received_total") or 0) > received,
                 15, "reports continue after the rotation")  # fmt: skip
        assert (
            sample(scrape(url), "preflight_reports_rejected_total", reason="unauthenticated") == 0
        )
        # A new connection gets the new leaf, checked against the example's CA and name.
        assert served_serial(grpc_port, files / "ca.crt") == serial(files / "tls.crt")
    finally:
        stop(agent)
        stop(collector)
    assert "certificate reloaded" in (tmp_path / "collector.log").read_text()


def served_serial(port: int, ca: Path) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="preflight-collector") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)
