"""Builders for the `preflight check` / `preflight status` process tests.

A host root (fixture GPU tree + an NFS mount in its mount table), a profile whose egress
targets are local HTTPS servers, Kubernetes node lists cut from the complete fixture
objects, and running a `preflight` subcommand as a real process from inside an event
loop (so the kmock API served by that loop keeps answering meanwhile).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.gpu_reports import HOSTFS

BIN = Path(sys.executable).parent
KUBE_NODES = (
    Path(__file__).resolve().parents[1] / "fixtures" / "kube" / "gpu-cluster" / "nodes.json"
)
SHARE = "/mnt/nfs-share"
MOUNTINFO = (
    "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,discard,errors=remount-ro\n"
    "23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n"
    f"30 22 0:45 / {SHARE} rw,relatime shared:40 - nfs4 nas01.example.internal:/export/runai "
    "rw,vers=4.1,rsize=1048576,wsize=1048576,hard,proto=tcp,timeo=600,retrans=2,sec=sys\n"
)


def host_root(tmp: Path, tree: str = "gpu-8-healthy") -> Path:
    """A copy of fixture `tree` whose mount table has an NFS share at SHARE."""
    root = tmp / f"host-{tree}"
    shutil.copytree(HOSTFS / tree, root, symlinks=True)
    (root / "proc" / "1").mkdir(parents=True, exist_ok=True)
    (root / "proc" / "1" / "mountinfo").write_text(MOUNTINFO)
    (root / SHARE.lstrip("/")).mkdir(parents=True, exist_ok=True)
    return root


def write_profile(
    path: Path, targets: dict[str, int], *, minimum: str = "1.15", recommended: str = "1.17"
) -> Path:
    """A profile like runai-2020 whose install targets are local HTTPS servers by port."""
    phases = ("install", "runtime")
    profile = {
        "name": "local-test",
        "description": "runai-2020 thresholds, local targets",
        "kubernetes_version": {"minimum": minimum, "recommended": recommended},
        "control_plane": {"cpus": 4, "memory_bytes": 8_000_000_000, "dedicated": True},
        "shared_volume": {"paths": [SHARE], "marker_max_age": "5m"},
        "egress": {
            "targets": [
                {
                    "name": name,
                    "host": "localhost",
                    "port": port,
                    "path": "/",
                    "phase": phases[i % 2],
                }
                for i, (name, port) in enumerate(targets.items())
            ]
        },
        "hysteresis": {"fail_after": 2, "pass_after": 2},
    }
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    return path


def write_agent_config(path: Path, **extra: Any) -> Path:
    config = {"egress": {"timeout": "3s"}, **extra}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def node_list(gpus: dict[str, int], kubelet: str = "v1.17.9") -> dict[str, Any]:
    """A NodeList of complete worker nodes (cut from the fixture's gpu-1), GPUs per name."""
    fixture = json.loads(KUBE_NODES.read_text())
    template = next(i for i in fixture["items"] if i["metadata"]["name"] == "gpu-1")
    items = []
    for name, count in gpus.items():
        node = copy.deepcopy(template)
        node["metadata"]["name"] = name
        node["metadata"]["labels"]["kubernetes.io/hostname"] = name
        for field in ("capacity", "allocatable"):
            node["status"][field]["nvidia.com/gpu"] = str(count)
        node["status"]["nodeInfo"]["kubeletVersion"] = kubelet
        items.append(node)
    return {**fixture, "items": items}


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.stdout)
        return data


# As root, a user namespace without mappings is a normal user: euid 65534 and no
# capabilities over the host's files (a 000 directory stays closed).
AS_NORMAL_USER: tuple[str, ...] = ("unshare", "--user") if os.geteuid() == 0 else ()


def cli_env(tmp: Path, **extra: str) -> dict[str, str]:
    """No kubeconfig unless given, no proxy, no colour decisions left to chance."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "NO_COLOR")
        and not k.lower().endswith("_proxy")
    }
    env.update({"HOME": str(tmp), "COLUMNS": os.environ.get("PREFLIGHT_TEST_COLUMNS", "200")})
    env.update(extra)
    return env


async def run_preflight(
    *args: str, env: dict[str, str], timeout: float = 90, prefix: tuple[str, ...] = ()
) -> Ran:
    """`preflight ARGS` as a process; `prefix` wraps it (e.g. `unshare --user`)."""
    process = await asyncio.create_subprocess_exec(
        *prefix,
        str(BIN / "preflight"),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())
