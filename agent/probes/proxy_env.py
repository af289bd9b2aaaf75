"""Which proxy an egress target goes through: HTTPS_PROXY / NO_PROXY as workloads read them.

Image pulls on a node are made by the container runtime (containerd, dockerd: Go), so the
semantics follow Go's `golang.org/x/net/http/httpproxy`, which is also what most
in-cluster tooling uses:

- `HTTPS_PROXY` is read before `https_proxy`, `NO_PROXY` before `no_proxy`; the agent's
  config (`egress.proxy.https_proxy` / `no_proxy`) overrides the environment, and an
  empty string there means "no proxy" / "no exceptions".
- A proxy URL is `http://[user:password@]host[:port]`; a bare `host:port` is taken as
  `http://`. The default port is 80. TLS to the proxy itself and SOCKS are not supported
  and are reported as a failed probe, never silently ignored.
- `NO_PROXY` is a comma- or space-separated list, case-insensitive:
  `*` alone bypasses the proxy for every host; `example.com` matches that host and every
  subdomain; `.example.com` and `*.example.com` match subdomains only; an entry with
  `:port` only matches that port; an IP address matches that literal IP host; a CIDR
  (`10.0.0.0/8`, `fd00::/8`) matches IP literal hosts inside it. Matching is on label
  boundaries: `example.com` never matches `badexample.com`.

Credentials are kept in `ProxyEndpoint.authorization` only; `display` (host:port) is the
only form that may be printed, exported or put in a result.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

__all__ = [
    "NoProxyRule",
    "ProxyEndpoint",
    "ProxySelection",
    "no_proxy_matches",
    "parse_no_proxy",
    "parse_proxy_url",
    "select_proxy",
]


@dataclass(frozen=True)
class ProxyEndpoint:
    """An HTTP proxy reached with CONNECT. `authorization` is a ready header value."""

    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)

    @property
    def display(self) -> str:
        """host:port, the only form of a proxy that is ever shown."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class ProxySelection:
    """The outcome of proxy selection for one target.

    `proxy` is None for a direct connection; `error` says why a configured proxy could not
    be used (an unparsable URL), without echoing the URL, which may carry a password.
    """

    proxy: ProxyEndpoint | None = None
    source: str = ""  # where the proxy came from: "HTTPS_PROXY", "config", "target"
    error: str = ""


def parse_proxy_url(url: str) -> ProxyEndpoint:
    """A proxy endpoint from `http://user:pass@host:port`; ValueError on anything else.

    The error message never contains the URL itself.
    """
    text = url.strip()
    if not text:
        raise ValueError("the proxy URL is empty")
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme.lower() != "http":
        raise ValueError(
            f"proxy scheme {parts.scheme.lower()!r} is not supported (only http:// proxies)"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the proxy URL has an invalid port") from None
    host = parts.hostname
    if not host:
        raise ValueError("the proxy URL has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("the proxy URL must not have a path, query or fragment")
    authorization = None
    if parts.username is not None or parts.password is not None:
        user = unquote(parts.username or "")
        password = unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        authorization = f"Basic {token}"
    return ProxyEndpoint(host=host, port=port or 80, authorization=authorization)


@dataclass(frozen=True)
class NoProxyRule:
    """One NO_PROXY entry, normalised."""

    kind: str  # "all", "domain", "ip", "cidr"
    value: str = ""
    port: int | None = None
    include_self: bool = True  # a "domain" entry without a leading dot matches itself too
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None


def _split_host_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            return host, int(rest[1:])
        return host, None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


def parse_no_proxy(value: str) -> list[NoProxyRule]:
    """NO_PROXY entries as rules; entries that cannot match anything are dropped."""
    rules: list[NoProxyRule] = []
    for raw in value.replace(" ", ",").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            rules.append(NoProxyRule(kind="all"))
            continue
        if "/" in entry:
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                continue
            rules.append(NoProxyRule(kind="cidr", value=entry, network=network))
            continue
        host, port = _split_host_port(entry)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            rules.append(NoProxyRule(kind="ip", value=str(address), port=port))
            continue
        include_self = True
        if host.startswith("*."):
            host, include_self = host[1:], False
        elif host.startswith("."):
            include_self = False
        host = host.lstrip(".").rstrip(".")
        if host:
            rules.append(
                NoProxyRule(kind="domain", value=host, port=port, include_self=include_self)
            )
    return rules


def no_proxy_matches(rules: list[NoProxyRule], host: str, port: int) -> bool:
    """True when `host:port` must bypass the proxy."""
    name = host.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(name)
    except ValueError:
        address = None
    for rule in rules:
        if rule.kind == "all":
            return True
        if rule.port is not None and rule.port != port:
            continue
        if rule.kind == "cidr":
            if address is not None and rule.network is not None and address in rule.network:
                return True
        elif rule.kind == "ip":
            if address is not None and str(address) == rule.value:
                return True
        elif address is None and (
            name.endswith("." + rule.value) or (rule.include_self and name == rule.value)
        ):
            return True
    return False


def _first_env(environ: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    for name in names:
        value = environ.get(name)
        if value:
            return name, value
    return None


def select_proxy(
    host: str,
    port: int,
    target_proxy: str,
    https_proxy_override: str | None,
    no_proxy_override: str | None,
    environ: Mapping[str, str] | None = None,
) -> ProxySelection:
    """The proxy for one target.

    `target_proxy` is the target's `proxy` setting: "none" (direct), "auto" (config
    override, else environment, then NO_PROXY), or an explicit URL (NO_PROXY not applied:
    the operator asked for exactly this proxy).
    """
    env = os.environ if environ is None else environ
    setting = target_proxy.strip()
    if setting.lower() == "none":
        return ProxySelection()
    if setting.lower() != "auto":
        try:
            return ProxySelection(proxy=parse_proxy_url(setting), source="target")
        except ValueError as error:
            return ProxySelection(source="target", error=f"target proxy: {error}")
    if https_proxy_override is not None:
        source, url = "config", https_proxy_override
    else:
        found = _first_env(env, "HTTPS_PROXY", "https_proxy")
        if found is None:
            return ProxySelection()
        source, url = found
    if not url.strip():
        return ProxySelection()
    if no_proxy_override is not None:
        no_proxy = no_proxy_override
    else:
        found_no = _first_env(env, "NO_PROXY", "no_proxy")
        no_proxy = found_no[1] if found_no else ""
    if no_proxy_matches(parse_no_proxy(no_proxy), host, port):
        return ProxySelection()
    try:
        return ProxySelection(proxy=parse_proxy_url(url), source=source)
    except ValueError as error:
        return ProxySelection(source=source, error=f"{source}: {error}")
