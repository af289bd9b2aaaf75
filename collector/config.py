"""The collector's configuration: strict YAML; every key in docs/configuration.md."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from preflight.configfile import (
    ConfigError,
    Duration,
    ListenAddress,
    StrictModel,
    load_yaml_file,
)
from preflight.mirrors import MIRROR_PATTERN

__all__ = ["CollectorConfig", "ConfigError", "load_config"]


class ListenConfig(StrictModel):
    grpc: ListenAddress = "0.0.0.0:9751"
    http: ListenAddress = "0.0.0.0:9750"


class LimitsConfig(StrictModel):
    """Bounds on one report; a report beyond them is rejected and counted."""

    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_node_name_length: int = Field(default=253, ge=1, le=1024)
    max_targets: int = Field(default=64, ge=1)
    max_mounts: int = Field(default=32, ge=1)
    # Per node: a burst of `report_burst` reports, then one per `min_report_interval`.
    # An agent reports on change (at most once per probe cycle) and every heartbeat.
    min_report_interval: Duration = 1.0
    report_burst: int = Field(default=10, ge=1)
    # Distinct nodes held at once; a report for one more is refused (too_many_nodes).
    max_nodes: int = Field(default=5000, ge=1)
    # Serialized bytes of all stored reports together (refused beyond: state_full).
    max_state_bytes: int = Field(default=128 * 1024 * 1024, ge=1024 * 1024)
    # Strings that become label values (targets, mount paths, kernel, OS, versions).
    max_label_length: int = Field(default=256, ge=16, le=4096)
    # Free text (messages, certificate subjects, mount options) is cut to this length.
    max_text_length: int = Field(default=2048, ge=64, le=65536)
    # Items in any other repeated field (DNS addresses, certificate names, peers, GPUs).
    max_list_length: int = Field(default=1024, ge=1)
    # Event times (sent_at, started_at, markers, boot time) further from the collector's
    # clock than this are refused; a smaller skew stays a reported fact.
    max_timestamp_offset: Duration = 10 * 365 * 86400.0


class KubernetesConfig(StrictModel):
    # auto: in-cluster when running in a pod, else kubeconfig when one exists, else none.
    mode: Literal["auto", "in-cluster", "kubeconfig", "none"] = "auto"
    kubeconfig: Path | None = None
    refresh_interval: Duration = 30.0


class TlsConfig(StrictModel):
    """TLS on the gRPC port; both files are re-read when they change (no restart)."""

    cert_file: Path | None = None
    key_file: Path | None = None
    # When set, agents must present a client certificate signed by this CA (mTLS).
    client_ca_file: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls.cert_file and tls.key_file must be set together")
        if self.client_ca_file is not None and self.cert_file is None:
            raise ValueError("tls.client_ca_file needs tls.cert_file and tls.key_file")
        return self

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None


class AuthConfig(StrictModel):
    """Who may report: see docs/security.md."""

    mode: Literal["none", "token-file", "kubernetes"] = "none"
    # token-file: the one shared token every agent presents.
    token_file: Path | None = None
    # kubernetes: the agents' ServiceAccount (namespace/name) and the token audience.
    service_account: str = Field(
        default="preflight/preflight-agent", pattern=r"^[a-z0-9-.]+/[a-z0-9-.]+$"
    )
    audience: str = Field(default="preflight-collector", min_length=1)
    # How long a TokenReview answer is reused (never past the token's own expiry).
    cache_ttl: Duration = 300.0
    cache_size: int = Field(default=20_000, ge=1)
    # A new token waits at most this long for the API before the agent gets UNAVAILABLE.
    review_timeout: Duration = 5.0

    @model_validator(mode="after")
    def _token_file(self) -> AuthConfig:
        if self.mode == "token-file" and self.token_file is None:
            raise ValueError("auth.mode token-file needs auth.token_file")
        return self


class CollectorConfig(StrictModel):
    listen: ListenConfig = Field(default_factory=ListenConfig)
    # A profile name shipped in preflight/profiles, or a path to a YAML file.
    profile: str = "runai-2020"
    # The Run:ai cluster domain (FQDN); system nodes probe https://<it>/ (cluster_domain_tls).
    cluster_domain: str = Field(
        default="",
        pattern=r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$|^$",
        max_length=253,
    )
    # Air-gapped clusters: profile target name → host[:port] of its internal mirror, probed
    # and judged in its place (preflight.mirrors; names are checked against the profile).
    mirrors: dict[
        str, Annotated[str, StringConstraints(pattern=MIRROR_PATTERN, max_length=260)]
    ] = Field(default_factory=dict)
    # The heartbeat agents are asked to keep (sent in every ReportAck).
    heartbeat_interval: Duration = 30.0
    # A node is stale (preflight_agent_up 0) after this many missed heartbeats.
    stale_after_heartbeats: int = Field(default=3, ge=1)
    # A node silent this long is forgotten: its series disappear from /metrics.
    forget_after: Duration = 3600.0
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)
    tls: TlsConfig = Field(default_factory=TlsConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)


def load_config(path: Path | None) -> CollectorConfig:
    return CollectorConfig() if path is None else load_yaml_file(CollectorConfig, path)
