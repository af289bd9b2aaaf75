"""The collector's strict config models (pydantic), on the conventions of preflight.strict.

Every config file is strict YAML whose errors name the file and the key. The agent's
config and the profiles are pydantic-free dataclasses (preflight.strict: the agent's
memory); the collector's config keeps pydantic models, and this module gives them the
same durations, the same ConfigError and the same YAML reading.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from preflight.strict import ConfigError, parse_duration, read_yaml, top_level_mapping

__all__ = [
    "ConfigError",
    "Duration",
    "ListenAddress",
    "StrictModel",
    "load_yaml_file",
    "parse_duration",
    "parse_listen_address",
    "parse_mapping",
]

Duration = Annotated[float, BeforeValidator(parse_duration)]

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def parse_listen_address(value: Any) -> str:
    """`HOST:PORT` to listen on: an IPv4 address, `[IPv6]`, a host name or empty, port 0-65535.

    Checked here so that `--check-config` catches what would otherwise fail (or, for a
    port like 99999, silently wrap) only when the server starts.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT (e.g. 0.0.0.0:9750 or [::]:9750), got {value!r}")
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"port {port} out of range 0-65535 in {value!r}")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address in {value!r}") from None
    elif host and not _HOSTNAME.match(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(
                f"{host!r} is neither an address nor a host name in {value!r}"
            ) from None
    return value.strip()


ListenAddress = Annotated[str, BeforeValidator(parse_listen_address)]


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


ModelT = TypeVar("ModelT", bound=BaseModel)


def describe_validation_error(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        lines.append(f"{source}: key '{key}': {message}")
    return "\n".join(lines)


def parse_mapping(model: type[ModelT], data: Any, source: str) -> ModelT:
    """Validates already-parsed YAML against `model`, naming `source` in errors."""
    mapping = top_level_mapping(data, source)
    try:
        return model.model_validate(mapping)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, source)) from None


def load_yaml_file(model: type[ModelT], path: Path) -> ModelT:
    return parse_mapping(model, read_yaml(path), str(path))
