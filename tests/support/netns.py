"""Network namespaces for the egress tests, with their own resolv.conf, hosts and processes.

`ip netns exec NS` bind-mounts /etc/netns/NS/{resolv.conf,hosts} over /etc for the command
it runs, so a program in the namespace resolves through the DNS server the test chose,
exactly as getaddrinfo does on a node. Everything created here is removed by `close()`,
including processes started in the namespace, even when a test failed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def missing_requirements() -> str | None:
    """Why namespace tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "root is needed for network namespaces"
    for program in ("ip", "nft", "dnsmasq"):
        if shutil.which(program) is None:
            return f"{program} is not installed"
    return None


class Netns:
    """One named network namespace; `run` and `spawn` execute inside it."""

    def __init__(self, name: str, resolv_conf: str = "", hosts: str = "") -> None:
        self.name = name
        self.etc = Path("/etc/netns") / name
        self.processes: list[subprocess.Popen[bytes]] = []
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.etc.mkdir(parents=True, exist_ok=True)
        # Always write both: otherwise the host's files (and its DNS) leak in.
        (self.etc / "resolv.conf").write_text(resolv_conf or "nameserver 127.0.0.1\n")
        (self.etc / "hosts").write_text(hosts or "127.0.0.1 localhost\n")
        self.run("ip", "link", "set", "lo", "up")

    def run(self, *argv: str, stdin: bytes | None = None, timeout: float = 60) -> bytes:
        completed = subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            input=stdin,
            capture_output=True,
            timeout=timeout,
            cwd=REPO_ROOT,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} in {self.name} exited {completed.returncode}: "
                f"{completed.stderr.decode(errors='replace')}"
            )
        return completed.stdout

    def spawn(self, *argv: str, log: Path | None = None) -> subprocess.Popen[bytes]:
        out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.name, *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)
        shutil.rmtree(self.etc, ignore_errors=True)


def link_pair(
    left: Netns, left_if: str, left_cidr: str, right: Netns, right_if: str, right_cidr: str
) -> None:
    """A veth pair between two namespaces, addressed and up; no routes beyond the link."""
    subprocess.run(
        [
            "ip",
            "link",
            "add",
            left_if,
            "netns",
            left.name,
            "type",
            "veth",
            "peer",
            "name",
            right_if,
            "netns",
            right.name,
        ],
        check=True,
    )
    for ns, interface, cidr in ((left, left_if, left_cidr), (right, right_if, right_cidr)):
        ns.run("ip", "addr", "add", cidr, "dev", interface)
        ns.run("ip", "link", "set", interface, "up")


def python_in(
    ns: Netns, module: str, *args: str, stdin: bytes | None = None, timeout: float = 60
) -> bytes:
    """`python -m module args` run inside the namespace with this test environment."""
    return ns.run(_python(), "-m", module, *args, stdin=stdin, timeout=timeout)


def spawn_python(
    ns: Netns, module: str, *args: str, log: Path | None = None
) -> subprocess.Popen[bytes]:
    return ns.spawn(_python(), "-m", module, *args, log=log)


def _python() -> str:
    import sys

    return sys.executable


def nft(ns: Netns, ruleset: str) -> None:
    ns.run("nft", "-f", "-", stdin=ruleset.encode())


__all__: Sequence[str] = [
    "Netns",
    "link_pair",
    "missing_requirements",
    "nft",
    "python_in",
    "spawn_python",
]
