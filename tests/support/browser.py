"""Headless Chromium and a status-page collector for the browser tests.

`Browser` runs one headless Chromium per call (screenshots, DOM dumps) and kills its
process group on a timeout; `Collector` is the standalone `preflight-collector` process of
tests.support.procs, fed over real gRPC. Shared by tests/e2e/test_status_page_browser.py and
tests/e2e/test_capacity_browser.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import grpc
import pytest

from preflight.v1 import report_pb2 as pb
from preflight.v1 import report_pb2_grpc as pb_grpc
from tests.support.procs import CollectorProcess
from tests.support.samples import Element

CHROMIUM = "/usr/bin/chromium"
# A page without dialogs dumps in about a second here; an alert() never returns.
ALERT_BLOCKS_AFTER = 10.0
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


class Browser:
    def __init__(self, tmp: Path) -> None:
        if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
            pytest.skip("chromium not installed (/usr/bin/chromium)")
        self.binary = CHROMIUM if Path(CHROMIUM).exists() else str(shutil.which("chromium"))
        self.tmp = tmp
        self.runs = 0

    def run(self, *args: str, timeout: float = 60) -> str:
        """Runs one headless Chromium; returns stdout. Kills its whole process group on timeout."""
        self.runs += 1
        profile = self.tmp / f"chromium-profile-{self.runs}"
        process = subprocess.Popen(
            [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
        assert process.returncode == 0, f"chromium exited {process.returncode}: {err[-2000:]}"
        return out

    def dump_dom(self, url: str, timeout: float = 60) -> str:
        return self.run("--dump-dom", url, timeout=timeout)

    def screenshot(self, url: str, path: Path) -> None:
        self.run(f"--screenshot={path}", "--window-size=1400,1800", url)


class Collector(CollectorProcess):
    """The shared standalone collector process, fed over real gRPC."""

    def send(self, reports: list[pb.NodeReport]) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            stub = pb_grpc.CollectorStub(channel)
            for report in reports:
                stub.Report(report, timeout=10)

    def verdict(self, requirement: str) -> str:
        verdicts = json.loads(self.get("api/v1/verdicts"))["verdicts"]
        return str(next(v["status"] for v in verdicts if v["requirement"] == requirement))


def elements_with(root: Element, attr: str, value: str) -> list[Element]:
    return [e for e in root.iter() if e.attrs.get(attr) == value]
