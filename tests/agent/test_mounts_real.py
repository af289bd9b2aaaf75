"""MountProber against real mounts: tmpfs, bind mounts and a FUSE filesystem that hangs.

Each "node" is this file run as a script inside its own mount and PID namespace
(``unshare --mount --pid --fork --mount-proc``): its mounts are private, vanish with it,
and /proc/1/mountinfo is its own mount table, exactly as /host/proc/1/mountinfo is the
host's for the agent in a pod. The script prints JSON; the tests assert on it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve()


def _require_namespaces() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for mount namespaces")
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("unshare or mount (util-linux) not installed")


def _node_command(spec: dict[str, Any]) -> list[str]:
    from tests.support.procs import NODE_NAMESPACE  # here: this file also runs as a script

    return [
        *NODE_NAMESPACE,
        sys.executable,
        str(HERE),
        "node",
        json.dumps(spec),
    ]


def _run_nodes(specs: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
    """Run one node per spec concurrently; their parsed JSON outputs, in order."""
    procs = [
        subprocess.Popen(
            _node_command(spec), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for spec in specs
    ]
    outputs: list[dict[str, Any]] = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, f"node failed (rc={proc.returncode}):\n{err}\n{out}"
            outputs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return outputs


@pytest.mark.root
@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_tmpfs_mounted_absent_plain_and_read_only(tmp_path: Path) -> None:
    _require_namespaces()
    for name in ("shared", "plain", "ro"):
        (tmp_path / name).mkdir()
    spec = {
        "mode": "once",
        "node": "node-a",
        "mounts": [
            ["tmpfs", str(tmp_path / "shared"), "size=4m"],
            ["tmpfs", str(tmp_path / "ro"), "ro,size=1m"],
        ],
        "volumes": [
            {"path": str(tmp_path / "shared"), "write_expected": True},
            {"path": str(tmp_path / "absent"), "write_expected": True},
            {"path": str(tmp_path / "plain"), "write_expected": False},
            {"path": str(tmp_path / "ro"), "write_expected": True},
        ],
    }
    (out,) = _run_nodes([spec], timeout=45)
    shared, absent, plain, ro = out["probes"][0]

    assert shared["state"] == "mounted" and shared["fs_type"] == "tmpfs"
    assert not shared["network_filesystem"] and not shared["read_only"]
    assert shared["capacity_bytes"] == 4 * 1024 * 1024
    assert shared["write_check"] == "ok"
    assert len(shared["marker"]["nonce"]) == 32 and shared["marker"]["peers"] == []

    assert absent["state"] == "missing"

    assert plain["state"] == "not_mounted"
    assert plain["fs_type"] == out["parent_fs_type"]  # the filesystem that holds tmp_path
    assert plain["write_check"] == "not_expected"

    assert ro["state"] == "mounted" and ro["read_only"]
    assert ro["write_check"] == "failed" and "Read-only file system" in ro["message"]
    assert ro["marker"]["nonce"] == ""  # no marker where nothing can be written

    # The mounts were private: nothing of them is left on the real /tmp.
    assert list((tmp_path / "shared").iterdir()) == []
    assert out["after_close"] == []  # own marker removed on close()


@pytest.mark.root
@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_two_nodes_bind_one_directory_see_each_other(tmp_path: Path) -> None:
    _require_namespaces()
    nas = tmp_path / "nas"
    mountpoint = tmp_path / "mnt" / "shared"
    sync = tmp_path / "sync"
    for d in (nas, mountpoint, sync):
        d.mkdir(parents=True)

    def spec(node: str, peer: str) -> dict[str, Any]:
        return {
            "mode": "pair",
            "node": node,
            "peer": peer,
            "sync": str(sync),
            "mounts": [["bind", str(nas), str(mountpoint)]],
            "volumes": [{"path": str(mountpoint), "write_expected": True}],
        }

    a, b = _run_nodes([spec("node-a", "node-b"), spec("node-b", "node-a")], timeout=75)
    for me, other in ((a, b), (b, a)):
        final = me["probes"][-1][0]
        assert final["state"] == "mounted"
        peers = final["marker"]["peers"]
        assert [p["node_name"] for p in peers] == [other["node"]]
        assert final["marker"]["markers_seen"] == 1
        other_nonces = {p[0]["marker"]["nonce"] for p in other["probes"]}
        assert peers[0]["nonce"] in other_nonces
    # Both removed their own marker on close; the shared directory is clean again.
    assert list((nas / ".preflight" / "nodes").iterdir()) == []


@pytest.mark.root
@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_two_nodes_with_private_tmpfs_see_no_peer(tmp_path: Path) -> None:
    _require_namespaces()
    mountpoint = tmp_path / "mnt" / "shared"
    sync = tmp_path / "sync"
    for d in (mountpoint, sync):
        d.mkdir(parents=True)

    def spec(node: str, peer: str) -> dict[str, Any]:
        return {
            "mode": "pair",
            "node": node,
            "peer": peer,
            "sync": str(sync),
            "mounts": [["tmpfs", str(mountpoint), "size=1m"]],
            "volumes": [{"path": str(mountpoint), "write_expected": True}],
        }

    a, b = _run_nodes([spec("node-a", "node-b"), spec("node-b", "node-a")], timeout=75)
    for me in (a, b):
        for probe in me["probes"]:
            result = probe[0]
            assert result["state"] == "mounted" and result["fs_type"] == "tmpfs"
            assert result["marker"]["nonce"]  # it did write its own marker...
            assert result["marker"]["peers"] == []  # ...and no other node's is there
            assert result["marker"]["markers_seen"] == 0


@pytest.mark.root
@pytest.mark.e2e
@pytest.mark.timeout(280)
def test_hung_fuse_filesystem_is_stuck_then_recovers(tmp_path: Path) -> None:
    _require_namespaces()
    from tests.support.hung_fuse import missing_requirements

    if why := missing_requirements():
        pytest.skip(why)
    for name in ("fuse", "ok"):
        (tmp_path / name).mkdir()
    spec = {
        "mode": "fuse",
        "node": "node-f",
        "fuse": str(tmp_path / "fuse"),
        "block_file": str(tmp_path / "block"),
        # The issue asks for minutes of hang: 40 cycles 3 s apart hold it for 2 minutes.
        "hung_probes": 40,
        "interval": 3.0,
        "timeout": 1.0,
        "mounts": [["tmpfs", str(tmp_path / "ok"), "size=1m"]],
        "volumes": [
            {"path": str(tmp_path / "fuse"), "write_expected": False},
            {"path": str(tmp_path / "ok"), "write_expected": True},
        ],
    }
    (out,) = _run_nodes([spec], timeout=240)
    fuse_path = str(tmp_path / "fuse")

    before = out["before"][0]
    assert before["state"] == "mounted" and before["fs_type"].startswith("fuse")
    assert before["capacity_bytes"] == 1000 * 4096

    hung = out["hung"]
    assert len(hung) == 40
    for i, cycle in enumerate(hung):
        fuse, ok = cycle["probes"]
        assert fuse["state"] == "stuck", (i, fuse)
        assert fuse["fs_type"].startswith("fuse")  # mountinfo facts still reported
        # The FUSE call was still blocked when probe() returned: it did not wait for it.
        assert cycle["still_blocking"]
        assert cycle["busy_paths"] == [fuse_path]
        # Everything else keeps being reported, every cycle.
        assert ok["state"] == "mounted" and ok["write_check"] == "ok"
        assert ok["marker"]["nonce"]
    assert "no answer within 1s" in hung[0]["probes"][0]["message"]
    for cycle in hung[1:]:
        assert "still blocked in statvfs" in cycle["probes"][0]["message"]
    # One blocked thread for the hung path, however many cycles: the pool does not grow.
    assert {c["pool_threads"] for c in hung[1:]} == {hung[0]["pool_threads"]}
    assert hung[-1]["pool_threads"] <= 4  # 2 volumes + mount table + 1
    assert out["fs_calls_started_while_hung"] == 1

    after = out["after"][-1][0]
    assert after["state"] == "mounted", out["after"]
    assert after["capacity_bytes"] == 1000 * 4096
    assert out["busy_after"] == []


# ----------------------------------------------------------------------------------
# The node driver: runs inside the namespaces (python tests/agent/test_mounts_real.py ...).
# ----------------------------------------------------------------------------------


def _mount(kind: str, a: str, b: str) -> None:
    if kind == "tmpfs":
        subprocess.run(["mount", "-t", "tmpfs", "-o", b, "pf-mounts-tmpfs", a], check=True)
    elif kind == "bind":
        subprocess.run(["mount", "--bind", a, b], check=True)
    else:
        raise ValueError(kind)


def _wait_for(path: Path, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > end:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.05)


def _asdicts(results: list[Any]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(r) for r in results]


async def _node(spec: dict[str, Any]) -> dict[str, Any]:
    from agent.config import MountsConfig, SharedVolume
    from agent.hostfs import HostFS
    from agent.probes.mountinfo import find_mount, parse_mountinfo
    from agent.probes.mounts import MountProber

    for kind, a, b in spec.get("mounts", []):
        _mount(kind, a, b)
    host = HostFS(Path("/"))
    config = MountsConfig(
        volumes=tuple(SharedVolume(**v) for v in spec["volumes"]),
        timeout=spec.get("timeout", 5.0),
    )
    prober = MountProber(host, spec["node"], config)
    out: dict[str, Any] = {"node": spec["node"]}
    mode = spec["mode"]
    try:
        if mode == "once":
            out["probes"] = [_asdicts(await prober.probe())]
            # The filesystem that holds the volumes' parent directory (tmp_path).
            parent, _ = find_mount(
                parse_mountinfo(host.read_mountinfo()), os.path.dirname(spec["volumes"][0]["path"])
            )
            out["parent_fs_type"] = parent.fs_type if parent else ""
        elif mode == "pair":
            sync = Path(spec["sync"])
            out["probes"] = [_asdicts(await prober.probe())]
            (sync / f"ready-{spec['node']}").touch()
            _wait_for(sync / f"ready-{spec['peer']}")
            out["probes"].append(_asdicts(await prober.probe()))
            (sync / f"probed-{spec['node']}").touch()
            _wait_for(sync / f"probed-{spec['peer']}")  # no close() before the peer has read
        elif mode == "fuse":
            out.update(await _fuse_scenario(spec, prober))
    finally:
        await prober.close()
    if mode == "once":
        nodes = Path(spec["volumes"][0]["path"]) / ".preflight" / "nodes"
        out["after_close"] = sorted(os.listdir(nodes))
    return out


async def _fuse_scenario(spec: dict[str, Any], prober: Any) -> dict[str, Any]:
    mountpoint, block = spec["fuse"], Path(spec["block_file"])
    calls_log = Path(spec["block_file"] + ".calls")
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.support.hung_fuse", mountpoint, str(block), str(calls_log)]
    )
    out: dict[str, Any] = {}
    try:
        end = time.monotonic() + 20
        while f" {mountpoint} " not in Path("/proc/self/mountinfo").read_text():
            if time.monotonic() > end or server.poll() is not None:
                raise RuntimeError("FUSE filesystem did not mount")
            await asyncio.sleep(0.05)
        out["before"] = _asdicts(await prober.probe())
        block.touch()
        calls_log.write_text("")
        out["hung"] = []
        for _ in range(spec["hung_probes"]):
            results = await prober.probe()
            out["hung"].append(
                {
                    "probes": _asdicts(results),
                    "still_blocking": block.exists() and bool(prober.executor.busy_keys()),
                    "busy_paths": sorted(prober.executor.busy_keys()),
                    "pool_threads": sum(
                        1 for t in threading.enumerate() if t.name.startswith("preflight-mounts")
                    ),
                }
            )
            await asyncio.sleep(spec["interval"])
        # Each blocked request the FUSE server received while hung (statfs on the root).
        out["fs_calls_started_while_hung"] = len(calls_log.read_text().split())
        block.unlink()
        out["after"] = []
        for _ in range(20):
            results = await prober.probe()
            out["after"].append(_asdicts(results))
            if results[0].state == "mounted":
                break
            await asyncio.sleep(0.25)
        out["busy_after"] = sorted(prober.executor.busy_keys())
    finally:
        block.unlink(missing_ok=True)
        subprocess.run(["fusermount3", "-u", "-z", mountpoint], check=False)
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
    return out


if __name__ == "__main__":
    # As a script, Python puts this file's directory (tests/agent) first on sys.path; drop
    # it so nothing there shadows an installed module (the repository root stays on sys.path
    # through the editable install).
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE.parent]
    if sys.argv[1] == "node":
        print(json.dumps(asyncio.run(_node(json.loads(sys.argv[2])))))
