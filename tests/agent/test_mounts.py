"""Mount facts from fixture mountinfo, the deadline executor, markers, and MountProber on
plain directories (the real-mount and hung-filesystem cases are in test_mounts_real.py)."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from pathlib import Path

import pytest

from agent.blocking import BlockingExecutor, DeadlineExceeded, KeyBusy
from agent.config import MountsConfig, SharedVolume
from agent.hostfs import HostFS
from agent.probes.mountinfo import (
    MountEntry,
    MountinfoError,
    find_mount,
    is_network_filesystem,
    parse_mountinfo,
    unescape_octal,
)
from agent.probes.mounts import MountProber
from agent.probes.shared_marker import decode_marker, marker_filename, read_peer_markers

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hostfs"


def fixture_entries() -> list[MountEntry]:
    return parse_mountinfo(HostFS(FIXTURES / "mounts").read_mountinfo())


def test_parse_nfs_cifs_bind_readonly_and_escapes() -> None:
    entries = {e.mount_point: e for e in fixture_entries()}
    nfs = entries["/mnt/nfs-share"]
    assert (nfs.fs_type, nfs.source) == ("nfs4", "nas01.example.internal:/export/runai")
    assert nfs.network and not nfs.read_only
    assert "vers=4.1" in nfs.options and nfs.options.startswith("rw,relatime")
    assert nfs.optional_fields == ("shared:40",)

    cifs = entries["/mnt/smb"]
    assert (cifs.fs_type, cifs.source, cifs.network) == (
        "cifs",
        "//filer.example.internal/datasets",
        True,
    )

    bind = entries["/mnt/bind-local"]  # a local directory bound in: looks mounted, is local
    assert (bind.root, bind.fs_type, bind.network) == ("/srv/exports/shared", "ext4", False)

    datasets = entries["/mnt/datasets"]  # ro per mount, rw superblock
    assert datasets.read_only

    sshfs = entries["/mnt/team share"]
    assert sshfs.source == "svc@files.example.internal:/srv/team data"
    assert sshfs.network and sshfs.fs_type == "fuse.sshfs"
    assert "/mnt/weird\ttab\\back" in entries


def test_find_mount_longest_prefix_and_stacking() -> None:
    entries = fixture_entries()
    entry, exact = find_mount(entries, "/mnt/nfs-share")
    assert entry is not None and exact and entry.fs_type == "nfs4"
    entry, exact = find_mount(entries, "/mnt/nfs-share/sub/dir/")
    assert entry is not None and not exact and entry.mount_point == "/mnt/nfs-share"
    entry, exact = find_mount(entries, "/mnt/nfs-shareX")  # a prefix, not a parent
    assert entry is not None and entry.mount_point == "/"
    entry, exact = find_mount(entries, "/mnt/stack")  # the top of two stacked mounts
    assert entry is not None and exact and entry.fs_type == "nfs" and entry.read_only
    entry, exact = find_mount(entries, "/var/lib/runai/jobs")  # bind of an NFS subdir
    assert entry is not None and exact and entry.root == "/runai/jobs" and entry.network
    assert find_mount([], "/x") == (None, False)


@pytest.mark.parametrize(
    ("fs_type", "network"),
    [
        ("nfs", True),
        ("nfs4", True),
        ("smb3", True),
        ("ceph", True),
        ("glusterfs", True),
        ("lustre", True),
        ("beegfs", True),
        ("gpfs", True),
        ("wekafs", True),
        ("fuse.sshfs", True),
        ("fuse.glusterfs", True),
        ("fuse.ceph-fuse", True),
        ("fuse.s3fs", True),
        ("ext4", False),
        ("xfs", False),
        ("tmpfs", False),
        ("overlay", False),
        ("fuse", False),
        ("fuse.lxcfs", False),
    ],
)
def test_network_classification(fs_type: str, network: bool) -> None:
    assert is_network_filesystem(fs_type) is network


def test_unescape() -> None:
    assert unescape_octal(r"/a\040b\011c\012d\134e") == "/a b\tc\nd\\e"
    assert unescape_octal(r"/caf\303\251") == "/café"
    assert unescape_octal("/plain") == "/plain"


@pytest.mark.parametrize(
    "line",
    ["garbage", "1 2 3:4 / /x rw shared:1", "a b 0:1 / / rw - ext4 /dev/x rw", "1 2 0:1 / / - x"],
)
def test_malformed_mountinfo_names_the_line(line: str) -> None:
    with pytest.raises(MountinfoError, match="line 2"):
        parse_mountinfo("22 1 0:1 / / rw - ext4 /dev/vda rw\n" + line + "\n")


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("node-1.example.com", "node-1.example.com"),
        ("../../etc/passwd", None),
        ("a/b", None),
        ("..", None),
        (".hidden", None),
        ("", None),
        ("x" * 300, None),
    ],
)
def test_marker_filename_is_safe(name: str, safe: str | None) -> None:
    result = marker_filename(name)
    if safe is not None:
        assert result == safe
    assert "/" not in result and not result.startswith(".") and result not in ("", "..")
    assert len(result) <= 220


def test_marker_names_that_collide_after_cleaning_stay_distinct() -> None:
    assert marker_filename("a/b") != marker_filename("a_b")
    assert marker_filename("a/b") != marker_filename("a:b")


def test_decode_marker_rejects_garbage_and_foreign_names() -> None:
    good = json.dumps({"node": "n1", "nonce": "ab", "written_at": 5}).encode()
    marker = decode_marker("n1", good)
    assert marker is not None and (marker.node_name, marker.nonce, marker.written_at) == (
        "n1",
        "ab",
        5.0,
    )
    # A file claiming to be another node keeps its file name.
    impostor = decode_marker("n2", good)
    assert impostor is not None and impostor.node_name == "n2"
    assert decode_marker("n1", b"not json") is None
    assert decode_marker("n1", b"[]") is None
    assert decode_marker("n1", json.dumps({"nonce": 1, "written_at": 1}).encode()) is None
    assert decode_marker("n1", json.dumps({"nonce": "a", "written_at": True}).encode()) is None
    assert decode_marker("n1", b" " * 5000) is None


def test_peer_sample_is_bounded(tmp_path: Path) -> None:
    nodes = tmp_path / ".preflight" / "nodes"
    nodes.mkdir(parents=True)
    for i in range(40):
        (nodes / f"n{i}").write_text(json.dumps({"node": f"n{i}", "nonce": "x", "written_at": 1}))
    (nodes / ".n3.tmp").write_text("partial")
    (nodes / "junk").write_text("not json")
    peers, seen = read_peer_markers(tmp_path, "n0", 16)
    assert seen == 40  # 39 peers + junk; not n0 itself, not the hidden temp file
    assert 15 <= len(peers) <= 16  # junk may be drawn and is dropped
    assert all(p.node_name != "n0" for p in peers)


# --- the deadline executor, with a real blocking call (a thread parked on an Event) ---


async def test_executor_deadline_then_busy_then_recovery() -> None:
    executor = BlockingExecutor(max_workers=3, name="pf-test-exec")
    release = threading.Event()
    calls: list[str] = []

    def hang() -> str:
        calls.append("hang")
        release.wait(30)
        return "late"

    with pytest.raises(DeadlineExceeded):
        await executor.run("/mnt/a", hang, timeout=0.2)
    # While blocked: nothing new starts on that key; other keys still work.
    for _ in range(5):
        with pytest.raises(KeyBusy):
            await executor.run("/mnt/a", hang, timeout=0.2)
        assert await executor.run("/mnt/b", lambda: "ok", timeout=5) == "ok"
    assert calls == ["hang"]
    assert set(executor.busy_keys()) == {"/mnt/a"}
    assert executor.threads_alive() <= 2
    release.set()
    for _ in range(100):  # the blocked call returns: the key frees itself
        if executor.busy_since("/mnt/a") is None:
            break
        await asyncio.sleep(0.05)
    assert await executor.run("/mnt/a", lambda: "back", timeout=5) == "back"
    executor.shutdown()


async def test_executor_propagates_exceptions() -> None:
    executor = BlockingExecutor(max_workers=1)

    def boom() -> None:
        raise PermissionError(13, "denied")

    with pytest.raises(PermissionError):
        await executor.run("k", boom, timeout=5)
    assert executor.busy_since("k") is None
    executor.shutdown()


# --- MountProber on a copy of the fixture tree (plain directories, fixture mountinfo) ---


async def test_prober_states_from_fixture_tree(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "mounts", root)
    config = MountsConfig(
        volumes=(
            SharedVolume(path="/mnt/nfs-share", write_expected=True),
            SharedVolume(path="/mnt/nfs-share/sub"),
            SharedVolume(path="/mnt/absent"),
            SharedVolume(path="/mnt/team share"),
            SharedVolume(path="relative/path"),
        ),
        timeout=5.0,
    )
    prober = MountProber(HostFS(root), "node-a", config)
    nfs, sub, absent, sshfs, relative = await prober.probe()

    assert (nfs.state, nfs.fs_type, nfs.network_filesystem) == ("mounted", "nfs4", True)
    assert nfs.source == "nas01.example.internal:/export/runai"
    assert nfs.capacity_bytes > 0 and nfs.write_check == "ok"
    assert nfs.write_latency_seconds > 0
    assert nfs.marker is not None and len(nfs.marker.nonce) == 32 and nfs.marker.peers == []
    marker_file = root / "mnt/nfs-share/.preflight/nodes/node-a"
    assert json.loads(marker_file.read_text())["nonce"] == nfs.marker.nonce
    assert sorted(p.name for p in (root / "mnt/nfs-share/.preflight").iterdir()) == ["nodes"]

    assert sub.state == "not_mounted" and sub.fs_type == "nfs4" and sub.network_filesystem
    assert "/mnt/nfs-share" in sub.message
    assert sub.write_check == "not_expected"
    assert not (root / "mnt/nfs-share/sub/.preflight").exists()  # no writes unless expected

    assert absent.state == "missing" and absent.fs_type == "ext4"
    assert sshfs.state == "mounted" and sshfs.fs_type == "fuse.sshfs"
    assert relative.state == "error" and "absolute" in relative.message

    second = (await prober.probe())[0]
    assert second.marker is not None and second.marker.nonce != nfs.marker.nonce  # fresh

    await prober.close()
    assert not marker_file.exists()


async def test_prober_sees_peer_markers_and_leaves_them_alone(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "mounts", root)
    nodes = root / "mnt/nfs-share/.preflight/nodes"
    nodes.mkdir(parents=True)
    (nodes / "node-b").write_text(json.dumps({"node": "node-b", "nonce": "b1", "written_at": 7}))
    config = MountsConfig(volumes=(SharedVolume(path="/mnt/nfs-share", write_expected=True),))
    prober = MountProber(HostFS(root), "node-a", config)
    (result,) = await prober.probe()
    assert result.marker is not None and result.marker.markers_seen == 1
    assert [(p.node_name, p.nonce) for p in result.marker.peers] == [("node-b", "b1")]
    await prober.close()
    assert sorted(p.name for p in nodes.iterdir()) == ["node-b"]


async def test_prober_without_mount_table_reports_errors(tmp_path: Path) -> None:
    config = MountsConfig(volumes=(SharedVolume(path="/mnt/x"),))
    prober = MountProber(HostFS(tmp_path), "n", config)
    (result,) = await prober.probe()
    assert result.state == "error" and "mount table" in result.message
    await prober.close()


async def test_prober_with_no_volumes(tmp_path: Path) -> None:
    prober = MountProber(HostFS(tmp_path), "n", MountsConfig())
    assert await prober.probe() == []
    await prober.close()


def test_prober_refuses_empty_node_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="node_name"):
        MountProber(HostFS(tmp_path), "", MountsConfig())
