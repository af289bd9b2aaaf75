"""Requirement profiles for tests: the packaged runai-2020 file with other egress targets."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


def packaged(name: str = "runai-2020") -> dict[str, Any]:
    text = (resources.files("preflight.profiles") / f"{name}.yaml").read_text()
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def write_profile(
    path: Path, targets: list[dict[str, Any]], name: str = "test-local", **sections: Any
) -> Path:
    """Writes the runai-2020 profile with `targets` (and any replaced `sections`) at `path`.

    Written beside and renamed over, as a ConfigMap update lands: a reader never sees
    half a file.
    """
    data = packaged()
    data["name"] = name
    data["egress"] = {"targets": targets}
    data.update(sections)
    scratch = path.with_name(path.name + ".new")
    scratch.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(scratch, path)
    return path


def local_target(name: str, port: int, **fields: Any) -> dict[str, Any]:
    """A profile target served by a test HTTPS server on localhost."""
    return {
        "name": name,
        "host": "localhost",
        "port": port,
        "path": "/",
        "phase": "install",
        **fields,
    }
