"""The deployment as rendered by the real `kubectl kustomize`: base and every overlay, and
look-ups into the rendered objects."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUSTOMIZE = DEPLOY / "kustomize"
OVERLAYS = [
    "base",
    *sorted(f"overlays/{p.name}" for p in (KUSTOMIZE / "overlays").iterdir() if p.is_dir()),
]
# The agent runs as two DaemonSets: through the NVIDIA runtime on GPU nodes, plain elsewhere.
AGENT_DAEMONSETS = ("preflight-agent", "preflight-agent-gpu")
NEEDS_KUBECTL = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")


@functools.cache
def render_text(name: str) -> str:
    result = subprocess.run(
        ["kubectl", "kustomize", str(KUSTOMIZE / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"kubectl kustomize {name} failed:\n{result.stderr}"
    return result.stdout


def render(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(render_text(name)) if doc]


def find(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected exactly one {kind} {name or ''}, found {len(found)}"
    return found[0]


def agent_container(objs: list[dict[str, Any]], name: str = "preflight-agent") -> dict[str, Any]:
    container: dict[str, Any] = one(objs, "DaemonSet", name)["spec"]["template"]["spec"][
        "containers"
    ][0]
    return container


def configmap(objs: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    found = [o for o in find(objs, "ConfigMap") if o["metadata"]["name"].startswith(prefix + "-")]
    assert len(found) == 1, f"expected one generated ConfigMap {prefix}-<hash>"
    return found[0]
