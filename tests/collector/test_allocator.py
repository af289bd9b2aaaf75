"""collector.allocator: with the mmap threshold fixed, what a scrape frees goes back.

Each case runs in a fresh interpreter: the first large block freed raises glibc's
dynamic threshold (as the first scrape does), then 1 MiB blocks (a family's text) are
allocated between small long-lived ones (reports, cached text) and freed. Without the
fix the heap keeps them; with it they were mappings of their own and RSS falls back.
"""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from collector.allocator import fix_mmap_threshold

_CASE = """
import os, sys
from collector.allocator import fix_mmap_threshold
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
first = b"z" * (8 << 20)  # a scrape's first family, freed: the threshold follows it
del first
base = rss()
keep, big = [], []
for i in range(48):
    big.append(bytes([i]) * (1 << 20))
    keep.append(bytes([i]) * 2000)  # malloc'd between them, and kept
del big
print(rss() - base)
"""

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the setting is glibc's (mallopt)"
)


def _held_after_free(mode: str) -> int:
    # A clean environment: no operator setting of the threshold to respect.
    done = subprocess.run(
        [sys.executable, "-c", _CASE, mode],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)},
    )
    return int(done.stdout)


def test_freed_blocks_go_back_to_the_system_only_with_the_fix() -> None:
    dynamic = _held_after_free("dynamic")
    fixed = _held_after_free("fixed")
    assert dynamic > 32 << 20  # the heap kept most of the 48 MiB freed
    assert fixed < dynamic / 8


def test_an_operators_own_setting_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert fix_mmap_threshold() is False
