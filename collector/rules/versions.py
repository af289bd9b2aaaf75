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
