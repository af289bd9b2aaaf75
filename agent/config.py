"""The agent's configuration: strict YAML; what to probe comes from the probe plan.

The collector sends the plan (agent.plan); the config only adds to it or overrides
parts of it locally. Unknown keys are errors that name the key and the file; the CLI
exits 2 on them.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from preflight.configfile import ConfigError, Duration, StrictModel, load_yaml_file

__all__ = ["AgentConfig", "ConfigError", "EgressTarget", "load_config", "resolve_node_name"]


class EgressTarget(StrictModel):
    """One outbound HTTPS endpoint to probe."""

    name: str = Field(min_length=1, max_length=128)
    host: str = Field(min_length=1)
    port: int = Field(default=443, ge=1, le=65535)
    path: str = "/"
    # Origin statuses that count as reachable; empty = any HTTP response.
    expect_status: tuple[int, ...] = ()
    # Statuses that only count when the response carries this header (registry 401).
    require_header_for: dict[int, str] = Field(default_factory=dict)
    phase: Literal["install", "runtime"] = "install"
    family: Literal["any", "ipv4", "ipv6"] = "any"
    # "auto" = from HTTPS_PROXY/NO_PROXY (or egress.proxy), "none" = direct, else a URL.
    proxy: str = "auto"
    timeout: Duration | None = None

    @field_validator("path")
    @classmethod
    def _path_absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value

    @property
    def url(self) -> str:
        port = "" if self.port == 443 else f":{self.port}"
        return f"https://{self.host}{port}{self.path}"


class ProxySettings(StrictModel):
    """Overrides for the proxy environment; None means take it from the environment."""

    https_proxy: str | None = None
    no_proxy: str | None = None


class EgressConfig(StrictModel):
    # Local additions to the probe plan's targets; one with a plan target's name
    # replaces it on this node. Empty: exactly the plan's targets.
    targets: tuple[EgressTarget, ...] = ()
    # An extra PEM bundle trusted on top of the system store (corporate CA).
    ca_file: Path | None = None
    proxy: ProxySettings = Field(default_factory=ProxySettings)
    timeout: Duration = 10.0

    @model_validator(mode="after")
    def _unique_names(self) -> EgressConfig:
        names = [t.name for t in self.targets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate target names: {', '.join(duplicates)}")
        return self


class SharedVolume(StrictModel):
    path: str = Field(min_length=1)
    # Writes are probed only where the operator says they are expected.
    write_expected: bool = False


class MountsConfig(StrictModel):
    # Local additions to the plan's shared volumes; same path = override.
    volumes: tuple[SharedVolume, ...] = ()
    timeout: Duration = 5.0
    peer_sample: int = Field(default=16, ge=0, le=1024)


class CollectorTls(StrictModel):
    """TLS to the collector; unset ca_file and server_name mean plaintext."""

    # The CA that signed the collector's certificate (TLS is on when this is set).
    ca_file: Path | None = None
    # The name the collector's certificate must carry, when it differs from the address.
    server_name: str | None = Field(default=None, min_length=1)
    # A client certificate and key, for a collector that requires mTLS.
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> CollectorTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("collector.tls.cert_file and key_file must be set together")
        return self

    @property
    def enabled(self) -> bool:
        return self.ca_file is not None or self.server_name is not None


class CollectorEndpoint(StrictModel):
    address: str = "127.0.0.1:9751"
    timeout: Duration = 5.0
    max_backoff: Duration = 30.0
    # How often the address is resolved again: each address it gives is one collector
    # replica, and every report goes to every replica (agent.fanout).
    resolve_interval: Duration = Field(default=30.0, gt=0)
    tls: CollectorTls = Field(default_factory=CollectorTls)
    # Read before every call and sent as `authorization: Bearer <token>`.
    token_file: Path | None = None


class AgentConfig(StrictModel):
    node_name: str | None = None
    # The profile (shipped name or YAML path) whose plan the agent probes until a
    # collector sends one, and in --once mode.
    profile: str = "runai-2020"
    host_root: Path = Path("/")
    collector: CollectorEndpoint = Field(default_factory=CollectorEndpoint)
    probe_interval: Duration = 15.0
    heartbeat_interval: Duration = 30.0
    # Deadline for the hardware and GPU probes (mounts and egress have their own).
    probe_timeout: Duration = 10.0
    egress: EgressConfig = Field(default_factory=EgressConfig)
    mounts: MountsConfig = Field(default_factory=MountsConfig)


def resolve_node_name(explicit: str | None, config: AgentConfig) -> str:
    """--node-name, then the config, then $NODE_NAME, then the hostname."""
    return explicit or config.node_name or os.environ.get("NODE_NAME") or socket.gethostname()


def load_config(path: Path | None) -> AgentConfig:
    """The config from `path`, or the built-in defaults when there is none."""
    return AgentConfig() if path is None else load_yaml_file(AgentConfig, path)
