"""The image's contents without a container engine: the wheel in a fresh venv.

Builds the image context with deploy/image-context.sh, runs the Dockerfile's own
wheel build script (build-wheel.sh) inside it, installs that wheel with the GPU
extra into a new virtual environment exactly as the image's runtime stage does, and
starts both commands from there with `--check-config` on the shipped configs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def _run(cmd: list[str | Path], cwd: Path | None = None, **env: str) -> str:
    result = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=150,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, (
        f"{cmd} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
    )
    return result.stdout


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_wheel_in_a_fresh_venv_runs_both_commands(tmp_path: Path) -> None:
    context = tmp_path / "context"
    _run([DEPLOY / "image-context.sh", context])

    venv = tmp_path / "venv"
    # The repository's interpreter, never the project venv: nothing leaks in.
    base_python = getattr(sys, "_base_executable", sys.executable)
    _run([base_python, "-m", "venv", venv])
    python = venv / "bin" / "python"

    wheels = tmp_path / "wheels"
    _run(["sh", "build-wheel.sh", wheels], cwd=context, PYTHON=str(python))
    [wheel] = wheels.glob("runai_preflight-*.whl")

    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if ".dist-info/" not in n}
    assert tops == {"agent", "collector", "preflight"}
    assert "preflight/v1/report_pb2.py" in names
    assert "agent/cli.py" in names and "collector/cli.py" in names
    shipped = {n for n in names if n.startswith("preflight/profiles/") and n.endswith(".yaml")}
    in_tree = {
        p.relative_to(REPO / "proto").as_posix()
        for p in (REPO / "proto" / "preflight" / "profiles").glob("*.yaml")
    }
    assert "preflight/profiles/runai-2020.yaml" in shipped
    assert shipped == in_tree
    assert not [n for n in names if n.startswith("tests/") or "/tests/" in n]
    assert not [n for n in names if "__pycache__" in n]

    # The runtime stage's install: the wheel plus the gpu extra, deps from the index.
    _run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"{wheel}[gpu]"]
    )

    bin_dir = venv / "bin"
    for component in ("agent", "collector"):
        _run(
            [
                bin_dir / f"preflight-{component}",
                "--check-config",
                "--config",
                DEPLOY / "config" / f"{component}.yaml",
            ],
            cwd=tmp_path,
        )
    # Imports come from the venv's site-packages, not from the source tree.
    where = _run(
        [
            python,
            "-c",
            "import agent, collector, preflight.v1.report_pb2 as r; "
            "print(agent.__file__, collector.__file__, r.__file__)",
        ],
        cwd=tmp_path,
    )
    assert str(REPO) not in where and where.count(str(venv)) == 3, where
    _run([python, "-c", "import pynvml"], cwd=tmp_path)
