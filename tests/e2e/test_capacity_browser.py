"""Headless Chromium renders the GPU capacity section of a real collector's status page.

The 3-node, 2-model cluster of tests/support/capacity_cluster.py (reports built by the
agent's GPU code with the fake NVML) goes over real gRPC to a `preflight-collector`
process; Chromium screenshots the page scrolled to the capacity section and dumps the
DOM it rendered. Set PREFLIGHT_SCREENSHOT_DIR to keep the screenshot.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support.browser import Browser, Collector, elements_with
from tests.support.capacity_cluster import A100, H100, capacity_reports
from tests.support.procs import wait_for
from tests.support.samples import parse

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_capacity_section_in_chromium(tmp_path: Path) -> None:
    browser = Browser(tmp_path)
    collector = Collector(tmp_path)
    try:
        collector.send(capacity_reports())
        # The red cells are the gpu_nodes verdict's (the page does not judge): wait for
        # the collector's first judging of these reports, about a second.
        wait_for(lambda: collector.verdict("gpu_nodes") == "warn", 30, "gpu_nodes judged")
        dom = parse(browser.dump_dom(collector.url))
        shot = tmp_path / "capacity.png"
        browser.screenshot(collector.url + "#gpu-capacity", shot)
    finally:
        collector.close()
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    if os.environ.get("PREFLIGHT_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["PREFLIGHT_SCREENSHOT_DIR"]) / "capacity.png")
    rows = elements_with(dom, "data-node", "a100-2")
    table_row = next(
        r for r in rows if any("cell-bad" in c.attrs.get("class", "") for c in r.iter())
    )
    bad = next(c for c in table_row.iter() if "cell-bad" in c.attrs.get("class", ""))
    assert bad.attrs["data-reason"] == "version_mismatch driver_differs"
    models = {
        e.attrs["data-model"]: e
        for e in dom.iter()
        if e.tag == "tr" and e.attrs.get("data-model") in (A100, H100)
    }
    assert set(models) == {A100, H100}
    a100_reasons = {c.attrs.get("data-reason") for c in models[A100].iter()}
    h100_reasons = {c.attrs.get("data-reason") for c in models[H100].iter()}
    assert "driver_differs" in a100_reasons and "driver_differs" not in h100_reasons
