"""A node whose NAS hangs: a real collector and a real agent with a hanging FUSE mount.

The agent runs in its own mount and PID namespace (tests.support.procs.NODE_NAMESPACE):
the shell there mounts a tmpfs (a volume that keeps working), mounts the hanging FUSE
filesystem of tests.support.hung_fuse (the "NAS"), waits for it, then execs
`preflight-agent`, which becomes PID 1 of the namespace, so /proc/1/mountinfo is that
node's mount table. Its only egress target is a local HTTPS server, up all along, so
the other probes' results can be watched while the NAS hangs. `hang()` makes every
getattr/statfs on the NAS block, `release()` answers them. Nothing is mounted on the
host: the mounts die with the namespace. Used by tests/e2e/test_hung_nas.py (seconds)
and bench/bench_chaos.py part e (ten minutes).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import trustme
import yaml

from tests.support.procs import (
    BIN,
    NODE_NAMESPACE,
    HttpsServer,
    LoopbackProcesses,
    stop,
    wait_for,
    write_collector_config,
)
from tests.support.profiles import local_target, write_profile

NODE = "nas-node"


class HungNas(LoopbackProcesses):
    def __init__(
        self, tmp: Path, heartbeat: float, probe_interval: float, mount_timeout: float
    ) -> None:
        super().__init__(tmp)
        self.heartbeat, self.probe_interval = heartbeat, probe_interval
        self.nas, self.ok = tmp / "nas", tmp / "ok"
        self.nas.mkdir()
        self.ok.mkdir()
        self.block_file, self.calls_log = tmp / "nas.block", tmp / "nas.calls"
        ca = trustme.CA()
        ca_file = tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        self.site = HttpsServer(ca)
        profile = write_profile(tmp / "profile.yaml", [local_target("site", self.site.port)])
        write_collector_config(
            self.collector_config,
            f"127.0.0.1:{self.grpc_port}",
            f"127.0.0.1:{self.http_port}",
            heartbeat,
            profile=str(profile),
        )
        self.agent_config.write_text(
            yaml.safe_dump(
                {
                    "collector": {"address": f"127.0.0.1:{self.grpc_port}", "max_backoff": "1s"},
                    "profile": str(profile),
                    "probe_interval": f"{probe_interval}s",
                    "heartbeat_interval": f"{heartbeat}s",
                    "egress": {
                        "timeout": "2s",
                        "targets": [
                            {
                                "name": "site",
                                "host": "localhost",
                                "port": self.site.port,
                                "proxy": "none",
                            }
                        ],
                    },
                    "mounts": {
                        "volumes": [
                            {"path": str(self.nas), "write_expected": False},
                            {"path": str(self.ok), "write_expected": True},
                        ],
                        "timeout": f"{mount_timeout}s",
                    },
                }
            )
        )
        self.env = {**os.environ, "SSL_CERT_FILE": str(ca_file)}
        self.node: subprocess.Popen[bytes] | None = None

    def start_node(self) -> None:
        fuse = [sys.executable, "-m", "tests.support.hung_fuse"]
        fuse += [str(self.nas), str(self.block_file), str(self.calls_log)]
        agent = [str(BIN / "preflight-agent"), "--config", str(self.agent_config)]
        steps = [
            "set -e",
            shlex.join(["mount", "-t", "tmpfs", "-o", "size=1m", "pf-chaos-ok", str(self.ok)]),
            shlex.join(fuse) + " &",
            # The agent must find the NAS mounted when it starts, as on a real node.
            f"until grep -q ' {self.nas} ' /proc/self/mountinfo; do sleep 0.05; done",
            "exec " + shlex.join([*agent, "--node-name", NODE]),
        ]
        log = open(self.tmp / f"agent-{NODE}.log", "wb")  # noqa: SIM115 — lives with the process
        self.node = subprocess.Popen(
            [*NODE_NAMESPACE, "sh", "-c", "\n".join(steps)],
            stdout=log,
            stderr=log,
            env=self.env,
            cwd=Path(__file__).resolve().parents[2],
        )
        log.close()

    def agent_pid(self) -> int:
        """The agent process (the namespace's PID 1, unshare's child)."""
        assert self.node is not None
        children = Path(f"/proc/{self.node.pid}/task/{self.node.pid}/children")
        (pid,) = [int(p) for p in children.read_text().split()]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert b"preflight-agent" in cmdline, cmdline
        return pid

    def hang(self) -> None:
        self.calls_log.write_text("")
        self.block_file.touch()

    def release(self) -> None:
        self.block_file.unlink(missing_ok=True)

    def calls_while_hung(self) -> int:
        """Filesystem calls that reached the NAS while it hung (each one blocked)."""
        return len(self.calls_log.read_text().split()) if self.calls_log.exists() else 0

    def get(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)

    def detail(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.get(f"/api/v1/nodes/{NODE}")
        return answer

    def mounts(self) -> dict[str, dict[str, Any]]:
        return {m["path"]: m for m in self.detail()["report"].get("mounts", [])}

    def verdict(self, requirement: str) -> dict[str, Any]:
        verdicts = self.get("/api/v1/verdicts")["verdicts"]
        found: dict[str, Any] = next(v for v in verdicts if v["requirement"] == requirement)
        return found

    def wait_started(self, limit: float = 60) -> float:
        self.start_collector()
        wait_for(lambda: "verdicts" in self.get("/api/v1/verdicts"), 30, "collector answers")
        self.start_node()

        def healthy() -> bool:
            mounts = self.mounts()
            states = {p: mounts.get(p, {}).get("state") for p in (str(self.nas), str(self.ok))}
            return set(states.values()) == {"MOUNT_STATE_MOUNTED"}

        return wait_for(healthy, limit, "the agent reports both volumes mounted")

    def close(self) -> None:
        self.release()  # a blocked thread must be able to finish before the node dies
        if self.node is not None and self.node.poll() is None:
            with contextlib.suppress(OSError, ValueError, AssertionError):
                os.kill(self.agent_pid(), signal.SIGTERM)  # unshare does not forward it
            try:
                self.node.wait(15)
            except subprocess.TimeoutExpired:
                stop(self.node)
        super().close()
        self.site.stop()
