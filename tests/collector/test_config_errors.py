"""Invalid collector config values exit 2 (--check-config and start), naming file and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from collector.cli import main

CASES = [
    ("listen:\n  grpc: 127.0.0.1:99999\n", "key 'listen.grpc'", "out of range"),
    ("listen:\n  http: not-an-address\n", "key 'listen.http'", "HOST:PORT"),
    ("listen:\n  http: 'bad host!:9750'\n", "key 'listen.http'", "neither an address"),
    ("listen:\n  grpc: '[::1x]:9751'\n", "key 'listen.grpc'", "IPv6"),
    ("profile: no-such-profile\n", "key 'profile'", "neither a shipped profile"),
    ("limits:\n  max_nodes: 0\n", "key 'limits.max_nodes'", "greater than or equal to 1"),
    ("limits:\n  max_timestamp_offset: soon\n", "key 'limits.max_timestamp_offset'", "duration"),
]


@pytest.mark.parametrize(("text", "key", "why"), CASES)
@pytest.mark.parametrize("check_only", [True, False], ids=["check-config", "start"])
def test_invalid_value_exits_2_naming_file_and_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    key: str,
    why: str,
    check_only: bool,
) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text(text)
    argv = ["--config", str(path)] + (["--check-config"] if check_only else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(path) in err and key in err and why in err, err


def test_non_utf8_file_exits_2_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("heartbeat_interval: 30s\nprofile: caf\u00e9\n".encode("latin-1"))
    assert main(["--config", str(path), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: line 2: not UTF-8" in err, err


def test_valid_addresses_pass(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("listen:\n  grpc: '[::]:9751'\n  http: collector.local:0\n")
    assert main(["--config", str(path), "--check-config"]) == 0


@pytest.mark.parametrize("check_only", [True, False], ids=["check-config", "start"])
def test_real_process_exits_2_without_a_traceback(tmp_path: Path, check_only: bool) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text("listen:\n  grpc: 127.0.0.1:99999\n")
    argv = [sys.executable, "-m", "collector.cli", "--config", str(path)]
    proc = subprocess.run(
        argv + (["--check-config"] if check_only else []),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{path}: key 'listen.grpc'" in proc.stderr
