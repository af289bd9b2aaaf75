"""The agent's configuration: strict YAML; what to probe comes from the probe plan.

The collector sends the plan (agent.plan); the config only adds to it or overrides
parts of it locally. Unknown keys are errors that name the key and the file; the CLI
exits 2 on them. Sections are frozen dataclasses checked by preflight.strict, not
pydantic models: pydantic alone was ~9 MiB of the agent's resident memory.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from preflight.strict import Check, ConfigError, Duration, Invalid, Strict, load_yaml_file

__all__ = ["AgentConfig", "ConfigError", "EgressTarget", "load_config", "resolve_node_name"]


@dataclass(frozen=True, kw_only=True)
class EgressTarget(Strict):
    """One outbound HTTPS endpoint to probe."""

    name: Annotated[str, Check(min_length=1, max_length=128)]
    host: Annotated[str, Check(min_length=1)]
    port: Annotated[int, Check(ge=1, le=65535)] = 443
    path: str = "/"
    # Origin statuses that count as reachable; empty = any HTTP response.
    expect_status: tuple[int, ...] = ()
    # Statuses that only count when the response carries this header (registry 401).
    require_header_for: dict[int, str] = field(default_factory=dict)
    phase: Literal["install", "runtime"] = "install"
    family: Literal["any", "ipv4", "ipv6"] = "any"
    # "auto" = from HTTPS_PROXY/NO_PROXY (or egress.proxy), "none" = direct, else a URL.
    proxy: str = "auto"
    timeout: Duration | None = None

    def _validate(self) -> None:
        if not self.path.startswith("/"):
            raise Invalid("path", "must start with /")

    @property
    def url(self) -> str:
        port = "" if self.port == 443 else f":{self.port}"
        return f"https://{self.host}{port}{self.path}"


@dataclass(frozen=True, kw_only=True)
class ProxySettings(Strict):
    """Overrides for the proxy environment; None means take it from the environment."""

    https_proxy: str | None = None
    no_proxy: str | None = None


@dataclass(frozen=True, kw_only=True)
class EgressConfig(Strict):
    # Local additions to the probe plan's targets; one with a plan target's name
    # replaces it on this node. Empty: exactly the plan's targets.
    targets: tuple[EgressTarget, ...] = ()
    # An extra PEM bundle trusted on top of the system store (corporate CA).
    ca_file: Path | None = None
    proxy: ProxySettings = field(default_factory=ProxySettings)
    timeout: Duration = 10.0

    def _validate(self) -> None:
        names = [t.name for t in self.targets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate target names: {', '.join(duplicates)}")


@dataclass(frozen=True, kw_only=True)
class SharedVolume(Strict):
    path: Annotated[str, Check(min_length=1)]
    # Writes are probed only where the operator says they are expected.
    write_expected: bool = False


@dataclass(frozen=True, kw_only=True)
class MountsConfig(Strict):
    # Local additions to the plan's shared volumes; same path = override.
    volumes: tuple[SharedVolume, ...] = ()
    timeout: Duration = 5.0
    peer_sample: Annotated[int, Check(ge=0, le=1024)] = 16


@dataclass(frozen=True, kw_only=True)
class CollectorTls(Strict):
    """TLS to the collector; unset ca_file and server_name mean plaintext."""

    # The CA that signed the collector's certificate (TLS is on when this is set).
    ca_file: Path | None = None
    # The name the collector's certificate must carry, when it differs from the address.
    server_name: Annotated[str, Check(min_length=1)] | None = None
    # A client certificate and key, for a collector that requires mTLS.
    cert_file: Path | None = None
    key_file: Path | None = None

    def _validate(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("collector.tls.cert_file and key_file must be set together")

    @property
    def enabled(self) -> bool:
        return self.ca_file is not None or self.server_name is not None


@dataclass(frozen=True, kw_only=True)
class CollectorEndpoint(Strict):
    address: str = "127.0.0.1:9751"
    timeout: Duration = 5.0
    max_backoff: Duration = 30.0
    # How often the address is resolved again: each address it gives is one collector
    # replica, and every report goes to every replica (agent.fanout).
    resolve_interval: Annotated[Duration, Check(gt=0)] = 30.0
    tls: CollectorTls = field(default_factory=CollectorTls)
    # Read before every call and sent as `authorization: Bearer <token>`.
    token_file: Path | None = None


@dataclass(frozen=True, kw_only=True)
class AgentConfig(Strict):
    node_name: str | None = None
    # The profile (shipped name or YAML path) whose plan the agent probes until a
    # collector sends one, and in --once mode.
    profile: str = "runai-2020"
    host_root: Path = Path("/")
    collector: CollectorEndpoint = field(default_factory=CollectorEndpoint)
    probe_interval: Duration = 15.0
    heartbeat_interval: Duration = 30.0
    # Deadline for the hardware and GPU probes (mounts and egress have their own).
    probe_timeout: Duration = 10.0
    egress: EgressConfig = field(default_factory=EgressConfig)
    mounts: MountsConfig = field(default_factory=MountsConfig)


def resolve_node_name(explicit: str | None, config: AgentConfig) -> str:
    """--node-name, then the config, then $NODE_NAME, then the hostname."""
    return explicit or config.node_name or os.environ.get("NODE_NAME") or socket.gethostname()


def load_config(path: Path | None) -> AgentConfig:
    """The config from `path`, or the built-in defaults when there is none."""
    return AgentConfig() if path is None else load_yaml_file(AgentConfig, path)
