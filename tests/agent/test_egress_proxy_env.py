"""HTTPS_PROXY / NO_PROXY selection as workloads (Go's httpproxy) read them; pure unit tests."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.probes.proxy_env import (
    ProxyEndpoint,
    no_proxy_matches,
    parse_no_proxy,
    parse_proxy_url,
    select_proxy,
)

# Labels start with a letter: all-digit names are IP addresses, which never suffix-match.
labels = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("abcdefghijklmnopqrstuvwxyz"),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", max_size=9),
)
domains = st.lists(labels, min_size=1, max_size=4).map(".".join)


def matches(no_proxy: str, host: str, port: int = 443) -> bool:
    return no_proxy_matches(parse_no_proxy(no_proxy), host, port)


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "expected"),
    [
        ("example.com", "example.com", 443, True),
        ("example.com", "a.b.example.com", 443, True),
        ("example.com", "badexample.com", 443, False),
        (".example.com", "example.com", 443, False),
        (".example.com", "www.example.com", 443, True),
        ("*.example.com", "example.com", 443, False),
        ("*.example.com", "www.example.com", 443, True),
        ("EXAMPLE.com", "www.Example.COM.", 443, True),
        ("*", "anything.at.all", 443, True),
        ("example.com:8443", "example.com", 443, False),
        ("example.com:8443", "example.com", 8443, True),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("10.0.0.0/8", "ten.example", 443, False),
        ("fd00::/8", "fd12::1", 443, True),
        ("fd00::/8", "[fd12::1]", 443, True),
        ("192.168.1.1", "192.168.1.1", 443, True),
        ("192.168.1.1:80", "192.168.1.1", 443, False),
        ("[::1]:443", "::1", 443, True),
        ("foo.com, bar.com  baz.com", "x.baz.com", 443, True),
        ("", "example.com", 443, False),
        (",,, ,", "example.com", 443, False),
        ("not/a/cidr", "example.com", 443, False),
    ],
)
def test_no_proxy_semantics(no_proxy: str, host: str, port: int, expected: bool) -> None:
    assert matches(no_proxy, host, port) is expected


@given(domains, domains)
def test_a_domain_matches_itself_and_its_subdomains(domain: str, sub: str) -> None:
    assert matches(domain, domain)
    assert matches(domain, f"{sub}.{domain}")
    assert matches(f".{domain}", f"{sub}.{domain}")


@given(domains, labels)
def test_matching_is_on_label_boundaries(domain: str, prefix: str) -> None:
    assert not matches(domain, f"{prefix}{domain}")


@given(st.ip_addresses(v=4), st.integers(min_value=0, max_value=32))
def test_cidr_contains_exactly_its_addresses(address: object, prefix: int) -> None:
    import ipaddress

    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    assert matches(str(network), str(address))
    outside = (
        network.broadcast_address + 1 if network.broadcast_address.packed != b"\xff" * 4 else None
    )
    if outside is not None:
        assert not matches(str(network), str(outside))


def test_proxy_url_parsing() -> None:
    assert parse_proxy_url("http://proxy.corp:3128") == ProxyEndpoint("proxy.corp", 3128)
    assert parse_proxy_url("proxy.corp:3128") == ProxyEndpoint("proxy.corp", 3128)
    assert parse_proxy_url("http://proxy.corp").port == 80
    assert parse_proxy_url("http://[fd00::1]:3128").display == "[fd00::1]:3128"
    with_auth = parse_proxy_url("http://us%40er:p%3Ass@proxy:8080/")
    assert with_auth.authorization == "Basic " + base64.b64encode(b"us@er:p:ss").decode()
    assert "p:ss" not in repr(with_auth) and "Basic" not in repr(with_auth)
    assert with_auth.display == "proxy:8080"


@pytest.mark.parametrize(
    "url",
    [
        "https://proxy:443",
        "socks5://proxy:1080",
        "http://",
        "http://proxy:99999",
        "http://proxy:3128/path",
        "",
    ],
)
def test_bad_proxy_urls_are_rejected_without_echoing_them(url: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_proxy_url(url.replace("proxy", "user:hunter2@proxy") if url else url)
    assert "hunter2" not in str(error.value)


def test_selection_order() -> None:
    env = {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2", "no_proxy": "skip.me"}
    assert select_proxy("a.com", 443, "auto", None, None, env).proxy == ProxyEndpoint("upper", 1)
    assert select_proxy("x.skip.me", 443, "auto", None, None, env).proxy is None
    assert select_proxy("a.com", 443, "none", None, None, env).proxy is None
    # Config overrides the environment; "" means no proxy / no exceptions.
    assert select_proxy("a.com", 443, "auto", "", None, env).proxy is None
    chosen = select_proxy("x.skip.me", 443, "auto", "http://conf:3", "", env)
    assert chosen.proxy == ProxyEndpoint("conf", 3) and chosen.source == "config"
    # An explicit per-target proxy ignores NO_PROXY.
    explicit = select_proxy("x.skip.me", 443, "http://mine:4", None, None, env)
    assert explicit.proxy == ProxyEndpoint("mine", 4)
    assert select_proxy("a.com", 443, "auto", None, None, {}).proxy is None
    broken = select_proxy("a.com", 443, "auto", None, None, {"HTTPS_PROXY": "ftp://u:pw@x"})
    assert broken.proxy is None and broken.error and "pw" not in broken.error
