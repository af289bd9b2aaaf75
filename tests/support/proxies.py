"""Real forward proxies for the egress tests: tinyproxy with a host filter or BasicAuth.

Each instance gets its own config, filter and log file in a temporary directory and runs
in the foreground (`-d`) as a child of the test, optionally inside a network namespace.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


class Tinyproxy:
    """One tinyproxy process; `stop()` ends it and is safe to call twice."""

    def __init__(
        self,
        directory: Path,
        name: str,
        port: int,
        listen: str = "127.0.0.1",
        deny_hosts: Sequence[str] = (),
        basic_auth: tuple[str, str] | None = None,
        netns: str | None = None,
        allow: Sequence[str] = ("127.0.0.1",),
    ) -> None:
        binary = shutil.which("tinyproxy")
        if binary is None:
            raise FileNotFoundError("tinyproxy")
        self.port, self.listen = port, listen
        self.log = directory / f"{name}.log"
        lines = [
            f"Port {port}",
            f"Listen {listen}",
            "Timeout 5",
            "MaxClients 50",
            f'LogFile "{self.log}"',
            "LogLevel Info",
            "DisableViaHeader Yes",
            *(f"Allow {a}" for a in allow),
        ]
        if deny_hosts:
            filter_file = directory / f"{name}.filter"
            filter_file.write_text("".join(f"{h}\n" for h in deny_hosts))
            lines += [f'Filter "{filter_file}"', "FilterType ere", "FilterURLs Off"]
        if basic_auth is not None:
            lines.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
        conf = directory / f"{name}.conf"
        conf.write_text("\n".join(lines) + "\n")
        argv = [binary, "-d", "-c", str(conf)]
        if netns is not None:
            argv = ["ip", "netns", "exec", netns, *argv]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if netns is None:
            self._wait_listening()
        else:
            time.sleep(0.3)  # cannot connect into the namespace from here; it starts fast

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tinyproxy exited: {self.log_text()}")
            try:
                with socket.create_connection((self.listen, self.port), timeout=0.5) as probe:
                    # Listening is not answering: on a loaded machine the first request
                    # was seen to wait seconds (a test's 5 s probe deadline ran out in
                    # proxy_connect). A request it must refuse proves the loop answers.
                    probe.settimeout(max(deadline - time.monotonic(), 0.5))
                    probe.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    if probe.recv(64):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"tinyproxy not answering on {self.port}: {self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
