"""HostFS: paths stay under the root, missing files are None, mountinfo falls back."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.hostfs import HostFS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hostfs"


def test_path_joins_absolute_and_relative_under_root(tmp_path: Path) -> None:
    host = HostFS(tmp_path)
    assert host.path("/proc/meminfo") == tmp_path / "proc" / "meminfo"
    assert host.path("proc/meminfo") == tmp_path / "proc" / "meminfo"
    assert host.path("/") == tmp_path


@pytest.mark.parametrize("bad", ["../etc/passwd", "/proc/../../etc", "a/../../b"])
def test_path_refuses_to_climb_out(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match=r"\.\."):
        HostFS(tmp_path).path(bad)


def test_read_text_and_missing(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "x").write_bytes(b"caf\xc3\xa9 \xff\n")
    host = HostFS(tmp_path)
    assert host.read_text("proc/x").startswith("café ")
    assert host.read_text_or_none("proc/absent") is None
    with pytest.raises(FileNotFoundError):
        host.read_text("proc/absent")
    assert host.read_text("proc/x", max_bytes=3) == "caf"


def test_relative_root_is_made_absolute() -> None:
    assert HostFS(Path("some/dir")).root.is_absolute()


def test_mountinfo_prefers_pid1_then_self() -> None:
    assert "nas01.example.internal" in HostFS(FIXTURES / "mounts").read_mountinfo()
    assert "nas:/x" in HostFS(FIXTURES / "mounts-self-only").read_mountinfo()
    with pytest.raises(FileNotFoundError):
        HostFS(FIXTURES / "cpu-only").read_mountinfo()


def test_live_root_reads_proc() -> None:
    host = HostFS(Path("/"))
    assert "MemTotal" in host.read_text("/proc/meminfo")
    assert host.listdir("/proc/self") == sorted(host.listdir("/proc/self"))
