"""shared_volume end to end: a real collector and two real agents, each "node" in its own
mount namespace, judged by the collector from the marker files the agents exchange.

Each node is ``unshare --mount --pid --fork --mount-proc --propagation private``: the
shell inside mounts what that node should see at the shared path and then execs
``preflight-agent``, which becomes PID 1 of the namespace, so ``/proc/1/mountinfo``
(where the agent reads the host's mount table) is that node's own mount table. The
network namespace is shared, so the agents reach the collector on loopback. Mounts made
inside a namespace vanish with it; nothing is mounted on the host.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.procs import BIN, NODE_NAMESPACE, start, stop, wait_for, write_collector_config
from tests.support.profiles import write_profile
from tests.support.servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.root]

HEARTBEAT = 2.0
PROBE_INTERVAL = 0.5
# Hysteresis needs two failing observations; a few heartbeats cover that with room.
VERDICT_WITHIN = 30.0


def _require() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for mount and PID namespaces")
    for program in ("unshare", "mount"):
        if shutil.which(program) is None:
            pytest.skip(f"{program} (util-linux) not installed")


class Scenario:
    """One collector, agents in private mount namespaces, a shared path they all use."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        # The same absolute path on every node, as a NAS mount would be; unique per run.
        self.path = Path(f"/mnt/pf-shvol-{secrets.token_hex(4)}")
        self.path.mkdir(parents=True)
        self.grpc_port, self.http_port = free_port(), free_port()
        # No egress targets: this scenario is about the volume only.
        self.profile = write_profile(tmp / "profile.yaml", [])
        self.collector_config = write_collector_config(
            tmp / "collector.yaml",
            f"127.0.0.1:{self.grpc_port}",
            f"127.0.0.1:{self.http_port}",
            HEARTBEAT,
            profile=str(self.profile),
        )
        self.agent_config = tmp / "agent.yaml"
        self.agent_config.write_text(
            yaml.safe_dump(
                {
                    "collector": {"address": f"127.0.0.1:{self.grpc_port}", "max_backoff": "1s"},
                    "probe_interval": f"{PROBE_INTERVAL}s",
                    "heartbeat_interval": f"{HEARTBEAT}s",
                    "profile": str(self.profile),
                    "mounts": {
                        "volumes": [{"path": str(self.path), "write_expected": True}],
                        "timeout": "5s",
                    },
                }
            )
        )
        self.collector: subprocess.Popen[bytes] | None = None
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}

    def start_collector(self) -> None:
        self.collector = start(
            "preflight-collector",
            "--config",
            str(self.collector_config),
            log=self.tmp / "collector.log",
        )
        wait_for(lambda: self.get("/healthz") is not None, 20, "collector answers /healthz")

    def start_node(self, node: str, mount: list[str] | None) -> None:
        """`mount` is the mount(8) argument list made inside the node's namespace, or None."""
        steps = ["set -e"]
        if mount is not None:
            steps.append(shlex.join(["mount", *mount, str(self.path)]))
        agent = [str(BIN / "preflight-agent"), "--config", str(self.agent_config)]
        steps.append("exec " + shlex.join([*agent, "--node-name", node]))
        log = open(self.tmp / f"agent-{node}.log", "wb")  # noqa: SIM115 — lives with the process
        self.nodes[node] = subprocess.Popen(
            [
                *NODE_NAMESPACE,
                "sh",
                "-c",
                "\n".join(steps),
            ],
            stdout=log,
            stderr=log,
        )
        log.close()

    def stop_node(self, node: str) -> int:
        """SIGTERM to the agent itself (unshare does not forward it); its exit status."""
        process = self.nodes[node]
        if process.poll() is None:
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
            try:
                pids = [int(p) for p in children.read_text().split()]
            except OSError:
                pids = []
            for pid in pids:
                os.kill(pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()  # --kill-child takes the agent with it
                process.wait(10)
        return process.returncode

    def get(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.http_port}{path}", timeout=5
            ) as response:
                return json.load(response) if path.startswith("/api/") else response.read()
        except (urllib.error.URLError, ConnectionError):
            return None

    def verdict(self) -> dict[str, Any]:
        data = self.get("/api/v1/verdicts")
        assert data is not None, "collector does not answer /api/v1/verdicts"
        (found,) = [v for v in data["verdicts"] if v["requirement"] == "shared_volume"]
        return dict(found)

    def wait_verdict(self, status: str, what: str) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def reached() -> bool:
            nonlocal last
            last = self.verdict()
            return bool(last["status"] == status)

        try:
            wait_for(reached, VERDICT_WITHIN, what)
        except AssertionError as error:
            raise AssertionError(f"{error}; last verdict {last}; {self.logs()}") from None
        return last

    def mount_of(self, node: str) -> dict[str, Any]:
        detail = self.get(f"/api/v1/nodes/{node}")
        assert detail is not None, f"no detail for {node}"
        (mount,) = [m for m in detail["report"]["mounts"] if m["path"] == str(self.path)]
        return dict(mount)

    def logs(self) -> str:
        parts = []
        for log in sorted(self.tmp.glob("*.log")):
            parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}")
        return "\n".join(parts)

    def close(self) -> None:
        for node in list(self.nodes):
            self.stop_node(node)
        if self.collector is not None:
            stop(self.collector)
        # The mounts lived in the namespaces and died with them; what is left at the path
        # on the host is ours (a node without a mount writes its probe files there).
        shutil.rmtree(self.path, ignore_errors=True)


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    _require()
    s = Scenario(tmp_path)
    try:
        s.start_collector()
        yield s
    finally:
        s.close()


def _markers(directory: Path) -> list[str]:
    # Markers only, as the agents read them: a running agent's `.node.tmp` may exist for an
    # instant while it rewrites its marker (the check after stopping covers every file).
    nodes = directory / ".preflight" / "nodes"
    return sorted(n for n in os.listdir(nodes) if not n.startswith(".")) if nodes.is_dir() else []


@pytest.mark.timeout(120)
def test_one_directory_bind_mounted_on_two_nodes_passes(scenario: Scenario, tmp_path: Path) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    for node in ("node-a", "node-b"):
        scenario.start_node(node, ["--bind", str(nas)])

    verdict = scenario.wait_verdict("pass", "shared_volume pass for one bind-mounted directory")
    print(f"shared_volume {verdict['status']}: {verdict['reason']} nodes={verdict['nodes']}")
    assert "mounted on every node (2 nodes)" in verdict["reason"], verdict
    assert "each sees its peers' markers" in verdict["reason"], verdict

    # Each node read the other's marker, and what it read is what the other wrote.
    def each_sees_the_other() -> bool:
        for me, other in (("node-a", "node-b"), ("node-b", "node-a")):
            peers = scenario.mount_of(me).get("marker", {}).get("peers", [])
            if [p["node_name"] for p in peers] != [other]:
                return False
        return True

    wait_for(each_sees_the_other, 10, "each node's report lists the other as a peer")
    for node in ("node-a", "node-b"):
        mount = scenario.mount_of(node)
        assert mount["state"] == "MOUNT_STATE_MOUNTED", mount
        assert mount["write_check"] == "WRITE_CHECK_OK", mount
        # A bind mount of a local directory: the pass comes from the markers alone,
        # the filesystem type is not held against it.
        assert mount["network_filesystem"] is False, mount
        assert len(mount["marker"]["nonce"]) == 32, mount

    # Stable: it stays pass across further reports (no flapping on marker rewrites).
    deadline = time.monotonic() + 2 * HEARTBEAT
    while time.monotonic() < deadline:
        assert scenario.verdict()["status"] == "pass", scenario.verdict()
        time.sleep(0.25)

    # Both markers live in the one directory behind the mounts; a clean stop removes each
    # agent's own, leaving nothing of theirs.
    assert _markers(nas) == ["node-a", "node-b"]
    for node in ("node-a", "node-b"):
        assert scenario.stop_node(node) == 0, scenario.logs()
    assert _markers(nas) == [], _markers(nas)
    assert not [p for p in (nas / ".preflight").rglob("*") if p.is_file()]


@pytest.mark.timeout(120)
def test_private_tmpfs_on_each_node_is_not_the_same_volume(scenario: Scenario) -> None:
    for node in ("node-a", "node-b"):
        scenario.start_node(node, ["-t", "tmpfs", "-o", "size=4m", f"pf-shvol-{node}"])

    verdict = scenario.wait_verdict("fail", "shared_volume fail for two private tmpfs")
    print(f"shared_volume {verdict['status']}: {verdict['reason']} nodes={verdict['nodes']}")
    assert "not the same volume" in verdict["reason"], verdict
    assert "{node-a}" in verdict["reason"] and "{node-b}" in verdict["reason"], verdict
    assert verdict["nodes"] == ["node-a", "node-b"], verdict
    for node in ("node-a", "node-b"):
        mount = scenario.mount_of(node)
        assert mount["fs_type"] == "tmpfs" and mount["source"] == f"pf-shvol-{node}", mount
        assert mount["marker"]["nonce"], mount  # it wrote its marker...
        assert mount["marker"].get("peers", []) == [], mount  # ...and sees no other
    # Nothing leaked onto the host's path: each tmpfs lived in its namespace only.
    assert _markers(scenario.path) == []


@pytest.mark.timeout(120)
def test_node_without_the_mount_is_named(scenario: Scenario, tmp_path: Path) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    scenario.start_node("node-a", ["--bind", str(nas)])
    scenario.start_node("node-b", None)

    verdict = scenario.wait_verdict("fail", "shared_volume fail for a node without the mount")
    print(f"shared_volume {verdict['status']}: {verdict['reason']} nodes={verdict['nodes']}")
    assert "node-b: not_mounted" in verdict["reason"], verdict
    assert "node-b" in verdict["nodes"], verdict
    assert scenario.mount_of("node-b")["state"] == "MOUNT_STATE_NOT_MOUNTED"
