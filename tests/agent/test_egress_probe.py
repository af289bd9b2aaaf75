"""Egress probe against real TLS servers on loopback: every direct-path reason and success.

Servers come from a private trustme PKI; the probe trusts only the test CA (egress.ca_file)
or, in one test, the CA given through SSL_CERT_FILE as every OpenSSL program reads it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from agent.config import EgressConfig, EgressTarget
from agent.probes.egress.probe import probe_target, probe_targets
from agent.probes.tls_facts import certificate_from_der
from tests.support.servers import Behaviour, LoopThread, Pki, server_port, start_server

pytestmark = pytest.mark.e2e


@dataclass
class Lab:
    pki: Pki
    ports: dict[str, int]
    ders: dict[str, bytes]
    behaviours: dict[str, Behaviour]
    closed_port: int

    def target(self, server: str, host: str = "localhost", **kwargs: Any) -> EgressTarget:
        return EgressTarget(name=server, host=host, port=self.ports[server], proxy="none", **kwargs)

    def config(self, timeout: float = 5.0, **kwargs: Any) -> EgressConfig:
        return EgressConfig(targets=(), ca_file=self.pki.ca_file, timeout=timeout, **kwargs)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    pki = Pki.create(tmp_path_factory.mktemp("pki"))
    thread = LoopThread()
    good, good_der = pki.server_context("localhost", "127.0.0.1")
    specs: dict[str, tuple[Behaviour, Any]] = {
        "ok": (Behaviour(), good),
        "not-found": (Behaviour(status=404), good),
        "error": (Behaviour(status=500), good),
        "registry-401": (
            Behaviour(status=401, headers=[("WWW-Authenticate", 'Bearer realm="x"')]),
            good,
        ),
        "bare-401": (Behaviour(status=401), good),
        "silent-after-tls": (Behaviour(mode="silent_after_tls"), good),
        "silent-tcp": (Behaviour(mode="silent_tcp"), None),
        "plain-http": (Behaviour(mode="plain_http"), None),
        "hangup": (Behaviour(mode="hangup"), good),
    }
    ders = {"ok": good_der}
    rogue, ders["rogue"] = pki.server_context("localhost", rogue=True)
    other, ders["other-name"] = pki.server_context("other.test")
    expired, ders["expired"] = pki.server_context("localhost", expired=True)
    specs["rogue"] = (Behaviour(), rogue)
    specs["other-name"] = (Behaviour(), other)
    specs["expired"] = (Behaviour(), expired)
    servers = {
        name: thread.call(start_server(behaviour, context))
        for name, (behaviour, context) in specs.items()
    }
    with socket.socket() as s:  # bound but never listening: a closed port that stays ours
        s.bind(("127.0.0.1", 0))
        closed = int(s.getsockname()[1])
        yield Lab(
            pki=pki,
            ports={name: server_port(server) for name, server in servers.items()},
            ders=ders,
            behaviours={name: spec[0] for name, spec in specs.items()},
            closed_port=closed,
        )
    for server in servers.values():
        server.close()
    thread.stop()


async def test_direct_success_reports_every_phase_and_the_certificate(lab: Lab) -> None:
    result = await probe_target(lab.target("ok"), lab.config())
    assert result.up, result.message
    assert result.reason is None and result.failed_phase is None
    assert result.http_status == 200
    assert set(result.phases) == {"resolve", "connect", "tls", "request", "transfer"}
    assert result.dns is not None and "127.0.0.1" in result.dns.addresses
    assert result.dns.family == "ipv4"
    assert result.connected_address.startswith("127.0.0.1:")
    assert not result.proxy_used and result.proxy == ""
    cert = result.certificate
    assert cert is not None and cert.verified
    assert cert.sha256_fingerprint == hashlib.sha256(lab.ders["ok"]).hexdigest()
    assert "localhost" in cert.dns_names and "127.0.0.1" in cert.dns_names
    assert "Preflight trusted test CA" in cert.issuer
    assert cert.not_after is not None and cert.not_after > time.time()
    assert cert.tls_version.startswith("TLS")
    assert 0 < result.time_to_first_byte_seconds <= result.total_seconds
    request = lab.behaviours["ok"].requests[-1].decode()
    assert request.startswith("GET / HTTP/1.1\r\n")
    assert f"host: localhost:{lab.ports['ok']}" in request.lower()
    assert "user-agent: preflight-agent" in request.lower()


async def test_ip_literal_target_verifies_against_the_ip_san(lab: Lab) -> None:
    result = await probe_target(lab.target("ok", host="127.0.0.1"), lab.config())
    assert result.up, result.message
    assert result.dns is not None and result.dns.addresses == ["127.0.0.1"]


async def test_system_trust_store_from_ssl_cert_file(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    without = await probe_target(lab.target("ok"), EgressConfig(targets=(), timeout=5))
    assert without.reason == "tls_untrusted"
    monkeypatch.setenv("SSL_CERT_FILE", str(lab.pki.ca_file))
    with_env = await probe_target(lab.target("ok"), EgressConfig(targets=(), timeout=5))
    assert with_env.up, with_env.message


async def test_a_chain_anchored_in_the_extra_ca_bundle_is_flagged(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Trusted only through egress.ca_file: a corporate CA, i.e. an inspecting proxy.
    via_bundle = await probe_target(lab.target("ok"), lab.config())
    assert via_bundle.up and via_bundle.certificate is not None
    assert via_bundle.certificate.trusted_by_extra_ca
    # The same server trusted through the system store (SSL_CERT_FILE) is not flagged,
    # even with an unrelated extra bundle configured.
    monkeypatch.setenv("SSL_CERT_FILE", str(lab.pki.ca_file))
    unrelated = tmp_path / "unrelated-ca.pem"
    unrelated.write_bytes(trustme.CA().cert_pem.bytes())
    via_system = await probe_target(
        lab.target("ok"), EgressConfig(targets=(), ca_file=unrelated, timeout=5)
    )
    assert via_system.up and via_system.certificate is not None
    assert not via_system.certificate.trusted_by_extra_ca
    no_bundle = await probe_target(lab.target("ok"), EgressConfig(targets=(), timeout=5))
    assert no_bundle.certificate is not None and not no_bundle.certificate.trusted_by_extra_ca


async def test_any_response_counts_when_no_status_is_expected(lab: Lab) -> None:
    result = await probe_target(lab.target("not-found"), lab.config())
    assert result.up and result.http_status == 404


async def test_unexpected_status(lab: Lab) -> None:
    result = await probe_target(lab.target("error", expect_status=(200,)), lab.config())
    assert not result.up
    assert result.reason == "http_unexpected_status"
    assert result.failed_phase == "request"
    assert result.http_status == 500
    assert "500" in result.message


async def test_registry_401_needs_www_authenticate(lab: Lab) -> None:
    rules: dict[str, Any] = {
        "expect_status": (200, 401),
        "require_header_for": {401: "www-authenticate"},
    }
    good = await probe_target(lab.target("registry-401", **rules), lab.config())
    assert good.up and good.http_status == 401
    bare = await probe_target(lab.target("bare-401", **rules), lab.config())
    assert bare.reason == "http_unexpected_status"
    assert "www-authenticate" in bare.message.lower()


async def test_untrusted_certificate_names_the_presented_issuer(lab: Lab) -> None:
    result = await probe_target(lab.target("rogue"), lab.config())
    assert result.reason == "tls_untrusted"
    assert result.failed_phase == "tls"
    cert = result.certificate
    assert cert is not None and not cert.verified
    assert "Preflight rogue inspection CA" in cert.issuer
    assert cert.sha256_fingerprint == hashlib.sha256(lab.ders["rogue"]).hexdigest()
    assert cert.not_after is not None
    assert "Preflight rogue inspection CA" in result.message


async def test_hostname_mismatch(lab: Lab) -> None:
    result = await probe_target(lab.target("other-name"), lab.config())
    assert result.reason == "tls_hostname_mismatch"
    assert result.certificate is not None and result.certificate.dns_names == ["other.test"]


async def test_expired_certificate_reports_not_after(lab: Lab) -> None:
    result = await probe_target(lab.target("expired"), lab.config())
    assert result.reason == "tls_expired"
    cert = result.certificate
    assert cert is not None
    assert cert.not_after == dt.datetime(2021, 1, 1, tzinfo=dt.UTC).timestamp()


async def test_plain_http_where_tls_is_expected(lab: Lab) -> None:
    result = await probe_target(lab.target("plain-http"), lab.config())
    assert result.reason == "tls_handshake_failed"
    assert result.failed_phase == "tls"


async def test_closed_port(lab: Lab) -> None:
    target = EgressTarget(name="closed", host="127.0.0.1", port=lab.closed_port, proxy="none")
    result = await probe_target(target, lab.config())
    assert result.reason == "connect_refused"
    assert result.failed_phase == "connect"


async def test_server_that_never_answers_the_request(lab: Lab) -> None:
    result = await probe_target(lab.target("silent-after-tls"), lab.config(timeout=0.8))
    assert result.reason == "timeout"
    assert result.failed_phase == "request"
    assert result.certificate is not None and result.certificate.verified
    assert "request" in result.phases


async def test_server_that_never_starts_tls(lab: Lab) -> None:
    result = await probe_target(lab.target("silent-tcp"), lab.config(timeout=0.8))
    assert result.reason == "timeout"
    assert result.failed_phase == "tls"


async def test_targets_run_concurrently_under_their_own_deadlines(lab: Lab) -> None:
    silent = [
        EgressTarget(
            name=f"silent-{i}",
            host="localhost",
            port=lab.ports["silent-tcp"],
            proxy="none",
            timeout=1.0,
        )
        for i in range(4)
    ]
    targets = [*silent, lab.target("ok")]
    started = time.perf_counter()
    results = await probe_targets(targets, lab.config())
    elapsed = time.perf_counter() - started
    assert [r.target for r in results] == [t.name for t in targets]
    assert [r.reason for r in results] == ["timeout"] * 4 + [None]
    # Serial probing would take ≥ 4 deadlines; concurrent about one.
    assert elapsed < 2.5 * 1.0
    assert results[-1].total_seconds < results[0].total_seconds


async def test_cycle_with_a_hundred_targets_is_not_serialised_by_the_resolver(lab: Lab) -> None:
    targets = [
        EgressTarget(name=f"t{i}", host="localhost", port=lab.ports["ok"], proxy="none")
        for i in range(40)
    ]
    results = await probe_targets(targets, lab.config())
    assert all(r.up for r in results), [r.message for r in results if not r.up]


def test_stdlib_certificate_parser_agrees_with_cryptography(lab: Lab) -> None:
    for der in lab.ders.values():
        a = certificate_from_der(der, verified=False, use_cryptography=True)
        b = certificate_from_der(der, verified=False, use_cryptography=False)
        assert (a.subject, a.issuer, a.not_before, a.not_after, a.dns_names) == (
            b.subject,
            b.issuer,
            b.not_before,
            b.not_after,
            b.dns_names,
        )
        assert a.sha256_fingerprint == b.sha256_fingerprint


async def test_verified_certificate_from_the_connection_equals_the_parsed_one(lab: Lab) -> None:
    # On success the agent takes OpenSSL's parse (getpeercert()), no certificate library.
    [result] = await probe_targets([lab.target("ok")], lab.config())
    assert result.up and result.certificate is not None
    parsed = certificate_from_der(lab.ders["ok"], verified=True, use_cryptography=True)
    got = result.certificate
    assert (got.subject, got.issuer, got.not_before, got.not_after, got.dns_names) == (
        parsed.subject,
        parsed.issuer,
        parsed.not_before,
        parsed.not_after,
        parsed.dns_names,
    )
    assert got.sha256_fingerprint == parsed.sha256_fingerprint and got.verified


def test_bad_certificate_bytes_are_a_value_error() -> None:
    with pytest.raises(ValueError):
        certificate_from_der(b"not a certificate", verified=False, use_cryptography=False)


async def test_probe_never_raises_on_a_bad_ca_file(lab: Lab, tmp_path: Path) -> None:
    config = EgressConfig(targets=(), ca_file=tmp_path / "missing.pem", timeout=2)
    result = await probe_target(lab.target("ok"), config)
    assert result.reason == "tls_handshake_failed"
    assert "missing.pem" in result.message


async def test_cancellation_propagates(lab: Lab) -> None:
    task = asyncio.create_task(probe_target(lab.target("silent-tcp"), lab.config(timeout=5)))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_server_that_hangs_up_instead_of_answering(lab: Lab) -> None:
    result = await probe_target(lab.target("hangup"), lab.config())
    assert result.reason == "http_unexpected_status"
    assert result.failed_phase == "request"
    assert result.http_status == 0
    assert result.certificate is not None and result.certificate.verified


GROWTH_SCRIPT = """
import asyncio, sys
from agent.config import EgressConfig, EgressTarget
from agent.probes.egress import tls
from agent.probes.egress.probe import probe_targets
if sys.argv[2] == "keep":
    tls._forget = lambda error: None  # as before the fix
targets = [EgressTarget(name=f"t{i}", host="localhost", port=int(sys.argv[1]), proxy="none")
           for i in range(6)]
def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])
async def main():
    for _ in range(3):
        results = await probe_targets(targets, EgressConfig(timeout=5))
    assert all(r.reason == "tls_untrusted" for r in results), results
    before = rss()
    for _ in range(20):
        await probe_targets(targets, EgressConfig(timeout=5))
    print(rss() - before)
asyncio.run(main())
"""


def test_tls_failures_do_not_grow_the_agent(lab: Lab) -> None:
    """A failed handshake's traceback must not keep its SSL objects alive until a full GC.

    120 tls_untrusted probes in a fresh process, with the tracebacks dropped (the agent)
    and kept (as before), compared in one run: kept grew by ~16 KiB a probe outside
    Python's heap (docs/performance.md, "Agent footprint").
    """
    import subprocess
    import sys

    def growth_kib(mode: str) -> int:
        out = subprocess.run(
            [sys.executable, "-c", GROWTH_SCRIPT, str(lab.ports["rogue"]), mode],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip
        return int(out.split()[-1])

    dropped, kept = growth_kib("drop"), growth_kib("keep")
    print("growth KiB", dropped, kept)
    assert kept > 4 * max(dropped, 512), (dropped, kept)
