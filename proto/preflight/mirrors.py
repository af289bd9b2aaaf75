"""Mirrors of air-gapped clusters: a profile target probed at an internal address instead.

The collector setting `mirrors` maps a profile target's name to `host[:port]` (e.g.
`nvcr.io: registry.corp:5000`). The target keeps its name, path, phase, scope and
expectations (a registry's `/v2/` semantics: expect_status, require_header_for), so it is
judged exactly as before; only where it is probed changes. Outputs show the mirror beside
the name (the target's identity in metrics, alerts and dashboards stays the profile's).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from preflight.profile import Profile
from preflight.strict import ConfigError

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# A DNS name or IPv4 address, optionally with a port: where the agents connect and what
# the certificate must name. No scheme, no path: the profile's path is kept.
MIRROR_PATTERN = rf"^({_LABEL}\.)*{_LABEL}(:\d{{1,5}})?$"
DEFAULT_PORT = 443


@dataclass(frozen=True)
class Mirror:
    target: str  # the profile target's name
    origin: str  # host:port the profile gives it
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def split_mirror(value: str) -> tuple[str, int]:
    """(host, port) of a validated `host[:port]`; ValueError for anything else."""
    if not re.match(MIRROR_PATTERN, value):
        raise ValueError(f"expected host or host:port, got {value!r}")
    host, sep, port = value.partition(":")
    number = int(port) if sep else DEFAULT_PORT
    if not 1 <= number <= 65535:
        raise ValueError(f"port {number} is outside 1–65535")
    return host, number


def resolve_mirrors(profile: Profile, mirrors: Mapping[str, str]) -> tuple[Mirror, ...]:
    """The mirrors of `profile`'s targets, in profile order.

    A name that is no target of the profile is a config error naming the key: a typo
    would otherwise leave the cluster probing the internet it cannot reach.
    """
    targets = {t.name: t for t in profile.egress.targets}
    unknown = [name for name in mirrors if name not in targets]
    if unknown:
        raise ConfigError(
            "\n".join(
                f"key 'mirrors.{name}': no target {name!r} in profile {profile.name} "
                f"(targets: {', '.join(targets)})"
                for name in unknown
            )
        )
    found = []
    for t in profile.egress.targets:
        if t.name in mirrors:
            try:
                host, port = split_mirror(mirrors[t.name])
            except ValueError as error:
                raise ConfigError(f"key 'mirrors.{t.name}': {error}") from None
            found.append(Mirror(t.name, f"{t.host}:{t.port}", host, port))
    return tuple(found)
