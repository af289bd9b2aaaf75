"""The collector's configuration: strict YAML; every key in docs/configuration.md."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from preflight.configfile import ConfigError, Duration, StrictModel, load_yaml_file

__all__ = ["CollectorConfig", "ConfigError", "load_config"]


class ListenConfig(StrictModel):
    grpc: str = "0.0.0.0:9751"
    http: str = "0.0.0.0:9750"


class LimitsConfig(StrictModel):
    """Bounds on one report; a report beyond them is rejected and counted."""

    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_node_name_length: int = Field(default=253, ge=1, le=1024)
    max_targets: int = Field(default=64, ge=1)
    max_mounts: int = Field(default=32, ge=1)


class KubernetesConfig(StrictModel):
    # auto: in-cluster when running in a pod, else kubeconfig when one exists, else none.
    mode: Literal["auto", "in-cluster", "kubeconfig", "none"] = "auto"
    kubeconfig: Path | None = None
    refresh_interval: Duration = 30.0


class CollectorConfig(StrictModel):
    listen: ListenConfig = Field(default_factory=ListenConfig)
    # A profile name shipped in preflight/profiles, or a path to a YAML file.
    profile: str = "runai-2020"
    # The heartbeat agents are asked to keep (sent in every ReportAck).
    heartbeat_interval: Duration = 30.0
    # A node is stale (preflight_agent_up 0) after this many missed heartbeats.
    stale_after_heartbeats: int = Field(default=3, ge=1)
    # A node silent this long is forgotten: its series disappear from /metrics.
    forget_after: Duration = 3600.0
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)


def load_config(path: Path | None) -> CollectorConfig:
    return CollectorConfig() if path is None else load_yaml_file(CollectorConfig, path)
