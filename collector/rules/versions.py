"""Kubernetes version strings as comparable (major, minor) pairs."""

from __future__ import annotations

import re

_VERSION = re.compile(r"^v?(\d+)\.(\d+)")


def major_minor(version: str) -> tuple[int, int] | None:
    """`v1.16.15-eks-abc` → (1, 16); None when it is not a version at all."""
    match = _VERSION.match(version.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def render(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


_DOTTED = re.compile(r"^v?(\d+(?:\.\d+)*)")


def dotted(version: str) -> tuple[int, ...] | None:
    """`v25.10.0`, `4.18.12`, `22.9` → their numbers; None when it does not start with one."""
    match = _DOTTED.match(version.strip())
    return tuple(int(p) for p in match.group(1).split(".")) if match else None


def at_least(version: tuple[int, ...], bound: tuple[int, ...]) -> bool:
    """version ≥ bound, compared on the bound's precision (26.3.1 ≥ 26.3)."""
    return version[: len(bound)] >= bound


def at_most(version: tuple[int, ...], bound: tuple[int, ...]) -> bool:
    """version ≤ bound on the bound's precision: a major.minor bound covers all its patches."""
    return version[: len(bound)] <= bound


def matches_prefix(version: tuple[int, ...], prefix: tuple[int, ...]) -> bool:
    return version[: len(prefix)] == prefix
