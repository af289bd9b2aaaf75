"""Egress probe through real tinyproxy instances: success, credentials, denial, origin down.

One proxy denies a host with its filter, another requires BasicAuth. The origin is a real
TLS server on loopback; targets are IP literals so the proxies resolve nothing.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import pytest

from agent.config import EgressConfig, EgressTarget
from agent.probes.egress.probe import probe_target
from tests.support.proxies import Tinyproxy
from tests.support.servers import (
    Behaviour,
    LoopThread,
    Pki,
    free_port,
    server_port,
    start_server,
)

pytestmark = pytest.mark.e2e

USER, PASSWORD = "prober", "s3cr3t-Pa55"


@dataclass
class ProxyLab:
    pki: Pki
    origin_port: int
    rogue_port: int
    hangup_port: int
    closed_port: int
    open_proxy: Tinyproxy
    auth_proxy: Tinyproxy

    def config(self, **kwargs: Any) -> EgressConfig:
        return EgressConfig(targets=(), ca_file=self.pki.ca_file, timeout=5, **kwargs)

    def target(self, proxy: str = "auto", host: str = "127.0.0.1", port: int = 0) -> EgressTarget:
        return EgressTarget(name="origin", host=host, port=port or self.origin_port, proxy=proxy)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyLab]:
    if shutil.which("tinyproxy") is None:
        pytest.skip("tinyproxy is not installed")
    directory = tmp_path_factory.mktemp("proxy")
    pki = Pki.create(directory)
    thread = LoopThread()
    context, _ = pki.server_context("127.0.0.1", "127.0.0.2")
    origin = thread.call(start_server(Behaviour(), context))
    rogue_context, _ = pki.server_context("127.0.0.1", rogue=True)
    rogue = thread.call(start_server(Behaviour(), rogue_context))
    # Not a proxy at all: reads the CONNECT and hangs up, as a crashing proxy would.
    hangup = thread.call(start_server(Behaviour(mode="hangup"), None))
    # Listening on 127.0.0.2 too: the denied host must be one the proxy could reach.
    denied_origin = thread.call(start_server(Behaviour(), context, host="127.0.0.2"))
    open_proxy = auth_proxy = None
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        try:
            open_proxy = Tinyproxy(directory, "open", free_port(), deny_hosts=[r"^127\.0\.0\.2$"])
            auth_proxy = Tinyproxy(directory, "auth", free_port(), basic_auth=(USER, PASSWORD))
            yield ProxyLab(
                pki=pki,
                origin_port=server_port(origin),
                rogue_port=server_port(rogue),
                hangup_port=server_port(hangup),
                closed_port=int(closed.getsockname()[1]),
                open_proxy=open_proxy,
                auth_proxy=auth_proxy,
            )
            assert server_port(denied_origin)
        finally:
            for proxy in (open_proxy, auth_proxy):
                if proxy is not None:
                    proxy.stop()
            for server in (origin, rogue, hangup):
                server.close()
            denied_origin.close()
            thread.stop()


def _url(proxy: Tinyproxy, credentials: str = "") -> str:
    return f"http://{credentials}127.0.0.1:{proxy.port}"


async def test_success_through_the_proxy_from_https_proxy(
    lab: ProxyLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", _url(lab.open_proxy))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    result = await probe_target(lab.target(), lab.config())
    assert result.up, result.message
    assert result.proxy_used and result.proxy == f"127.0.0.1:{lab.open_proxy.port}"
    assert result.proxy_connect_status == 200
    assert result.connected_address == f"127.0.0.1:{lab.open_proxy.port}"
    assert set(result.phases) == {
        "resolve",
        "connect",
        "proxy_connect",
        "tls",
        "request",
        "transfer",
    }
    assert result.certificate is not None and result.certificate.verified
    assert "CONNECT 127.0.0.1" in lab.open_proxy.log_text()


async def test_no_proxy_match_goes_direct(lab: ProxyLab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", _url(lab.open_proxy))
    monkeypatch.setenv("NO_PROXY", "example.com,127.0.0.0/8")
    result = await probe_target(lab.target(), lab.config())
    assert result.up and not result.proxy_used
    assert "proxy_connect" not in result.phases


async def test_config_override_beats_the_environment(
    lab: ProxyLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:1")  # would fail if used
    config = lab.config(proxy={"https_proxy": _url(lab.open_proxy), "no_proxy": ""})
    result = await probe_target(lab.target(), config)
    assert result.up and result.proxy_used, result.message


async def test_credentials_are_sent_and_never_reported(lab: ProxyLab) -> None:
    target = lab.target(proxy=_url(lab.auth_proxy, f"{USER}:{PASSWORD}@"))
    result = await probe_target(target, lab.config())
    assert result.up, result.message
    assert result.proxy == f"127.0.0.1:{lab.auth_proxy.port}"
    dumped = json.dumps(asdict(result))
    assert PASSWORD not in dumped and USER not in dumped
    assert "czNjcjN0" not in dumped  # base64 of the password's start, as in the header


async def test_proxy_requires_authentication(lab: ProxyLab) -> None:
    result = await probe_target(lab.target(proxy=_url(lab.auth_proxy)), lab.config())
    assert result.reason == "proxy_auth_required"
    assert result.failed_phase == "proxy_connect"
    assert result.proxy_connect_status == 407


async def test_wrong_credentials_are_auth_required_and_not_reported(lab: ProxyLab) -> None:
    target = lab.target(proxy=_url(lab.auth_proxy, f"{USER}:wrong-Secret@"))
    result = await probe_target(target, lab.config())
    assert result.reason == "proxy_auth_required"
    assert "wrong-Secret" not in json.dumps(asdict(result))


async def test_proxy_denies_the_host(lab: ProxyLab) -> None:
    target = lab.target(proxy=_url(lab.open_proxy), host="127.0.0.2")
    result = await probe_target(target, lab.config())
    assert result.reason == "proxy_denied"
    assert result.failed_phase == "proxy_connect"
    assert result.proxy_connect_status == 403
    assert result.http_status == 0  # the proxy's answer is never the origin's


async def test_proxy_cannot_reach_the_origin(lab: ProxyLab) -> None:
    target = lab.target(proxy=_url(lab.open_proxy), port=lab.closed_port)
    result = await probe_target(target, lab.config())
    assert result.reason == "proxy_connect_failed"
    assert result.failed_phase == "proxy_connect"
    assert result.proxy_connect_status >= 500


async def test_proxy_not_listening(lab: ProxyLab) -> None:
    target = lab.target(proxy=f"http://127.0.0.1:{lab.closed_port}")
    result = await probe_target(target, lab.config())
    assert result.reason == "connect_refused"
    assert result.proxy_used and "proxy" in result.message


async def test_unsupported_proxy_url_is_a_result_without_the_url(lab: ProxyLab) -> None:
    target = lab.target(proxy=f"socks5://{USER}:{PASSWORD}@127.0.0.1:1080")
    result = await probe_target(target, lab.config())
    assert result.reason == "proxy_connect_failed"
    assert PASSWORD not in json.dumps(asdict(result))
    assert "socks5" in result.message


async def test_local_dns_of_a_proxied_target_is_reported_not_required(
    lab: ProxyLab, tmp_path: Any
) -> None:
    # "localhost" resolves here; what matters is that dns is filled in and the proxy
    # path decides. The namespace test covers a name only the proxy can resolve.
    target = lab.target(proxy=_url(lab.open_proxy))
    result = await probe_target(target, lab.config())
    assert result.up
    assert result.dns is not None and result.dns.addresses == ["127.0.0.1"]


async def test_untrusted_certificate_through_the_proxy_names_its_issuer(lab: ProxyLab) -> None:
    # What a TLS-inspecting proxy looks like: the tunnel works, the certificate is foreign.
    target = lab.target(proxy=_url(lab.open_proxy), port=lab.rogue_port)
    result = await probe_target(target, lab.config())
    assert result.reason == "tls_untrusted"
    assert result.proxy_used and result.proxy_connect_status == 200
    assert result.certificate is not None
    assert "Preflight rogue inspection CA" in result.certificate.issuer


async def test_proxy_that_hangs_up_on_connect(lab: ProxyLab) -> None:
    target = lab.target(proxy=f"http://127.0.0.1:{lab.hangup_port}")
    result = await probe_target(target, lab.config())
    assert result.reason == "proxy_connect_failed"
    assert result.failed_phase == "proxy_connect"
    assert result.proxy_connect_status == 0
