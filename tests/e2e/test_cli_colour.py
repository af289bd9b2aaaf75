"""`preflight status` on a terminal: colour on a pseudo-terminal, none with NO_COLOR or a pipe.

An unreachable collector is enough: the table, its UNKNOWN row and the summary are
drawn either way, and the question is only whether ANSI colour codes come with them.
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli_cluster import cli_env
from tests.support.servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]
PREFLIGHT = str(Path(sys.executable).parent / "preflight")


SGR = re.compile(r"\x1b\[([0-9;]*)m")


def colours(text: str) -> set[str]:
    """Foreground/background colour parameters of every SGR sequence in `text`."""
    found = set()
    for params in SGR.findall(text):
        for p in params.split(";"):
            if p.isdigit() and (30 <= int(p) <= 49 or 90 <= int(p) <= 107):
                found.add(p)
    return found


def on_terminal(env: dict[str, str]) -> tuple[int, str]:
    url = f"http://127.0.0.1:{free_port()}"
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [PREFLIGHT, "status", "--collector", url], stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return process.wait(30), b"".join(chunks).decode(errors="replace")


def test_colour_on_a_terminal(tmp_path: Path) -> None:
    code, out = on_terminal(cli_env(tmp_path, TERM="xterm-256color"))
    assert code == 3
    assert "UNKNOWN" in out and "collector unreachable" in out
    assert colours(out) >= {"35"}  # UNKNOWN in magenta


def test_no_colour_with_no_color(tmp_path: Path) -> None:
    code, out = on_terminal(cli_env(tmp_path, TERM="xterm-256color", NO_COLOR="1"))
    assert code == 3 and "UNKNOWN" in out
    # NO_COLOR (no-color.org) removes colour; bold headers may stay.
    assert colours(out) == set()
    assert "\x1b[1m" in out


def test_no_colour_when_piped(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    ran = subprocess.run(
        [PREFLIGHT, "status", "--collector", url],
        capture_output=True,
        text=True,
        env=cli_env(tmp_path, TERM="xterm-256color"),
        timeout=30,
    )
    assert ran.returncode == 3 and "UNKNOWN" in ran.stdout
    assert "\x1b[" not in ran.stdout
