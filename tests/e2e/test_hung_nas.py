"""Chaos, short version: a hung NAS under a real agent reporting to a real collector.

The node of tests/support/hung_nas.py: a real agent in its own mount and PID namespace
with two volumes, a hanging FUSE filesystem (the NAS) and a tmpfs, and one local HTTPS
target. The NAS hangs for 20 probe intervals: the collector shows the mount `stuck`
(preflight_mount_stuck 1, shared_volume fails), while the tmpfs volume and the target
keep being reported every cycle and the node's reports arrive on time (never older than
a heartbeat plus a probe interval); the agent started one filesystem call on the NAS,
not one per cycle, and its threads and memory stay flat. Released, the mount is
`mounted` again within a few probes. The ten-minute version is bench/bench_chaos.py part e.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.hung_fuse import missing_requirements
from tests.support.hung_nas import NODE, HungNas
from tests.support.metrics import sample, scrape
from tests.support.procs import rss_kib, threads, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.root]

HEARTBEAT = 2.0
PROBE_INTERVAL = 1.0
MOUNT_TIMEOUT = 1.0
HANG_SECONDS = 20.0


@pytest.fixture
def nas(tmp_path: Path) -> Iterator[HungNas]:
    if why := missing_requirements():
        pytest.skip(why)
    node = HungNas(tmp_path, HEARTBEAT, PROBE_INTERVAL, MOUNT_TIMEOUT)
    try:
        yield node
    finally:
        node.close()


@pytest.mark.timeout(180)
def test_nas_hangs_agent_keeps_reporting_then_recovers(nas: HungNas) -> None:
    nas.wait_started()
    pid = nas.agent_pid()
    path = str(nas.nas)
    assert sample(scrape(nas.metrics_url), "preflight_mount_stuck", node=NODE, path=path) == 0.0

    nas.hang()
    took = wait_for(
        lambda: (
            sample(scrape(nas.metrics_url), "preflight_mount_stuck", node=NODE, path=path) == 1.0
        ),
        HEARTBEAT + PROBE_INTERVAL + MOUNT_TIMEOUT + 10,
        "the NAS reported stuck",
    )
    print(f"\nNAS hung: preflight_mount_stuck 1 at the collector after {took:.2f}s")
    early_rss, early_threads = rss_kib(pid), threads(pid)
    ages, thread_counts, sequences = [], [], []
    until = time.monotonic() + HANG_SECONDS
    while time.monotonic() < until:
        detail = nas.detail()
        ages.append(detail["last_report_age_seconds"])
        sequences.append(int(detail["report"]["sequence"]))
        mounts = {m["path"]: m for m in detail["report"]["mounts"]}
        assert mounts[path]["state"] == "MOUNT_STATE_STUCK", mounts[path]
        # The other volume and the egress target keep being probed and reported.
        ok = mounts[str(nas.ok)]
        assert ok["state"] == "MOUNT_STATE_MOUNTED" and ok["write_check"] == "WRITE_CHECK_OK", ok
        (site,) = detail["report"]["egress"]
        assert site["outcome"] == "OUTCOME_UP", site
        thread_counts.append(threads(pid))
        time.sleep(0.5)
    late_rss = rss_kib(pid)
    verdict = nas.verdict("shared_volume")
    print(
        f"{HANG_SECONDS:g}s hung: report age max {max(ages):.2f}s (heartbeat {HEARTBEAT:g}s), "
        f"threads {early_threads} -> {min(thread_counts)}..{max(thread_counts)}, "
        f"rss {early_rss} -> {late_rss} KiB, {nas.calls_while_hung()} NAS call(s) blocked, "
        f"shared_volume {verdict['status']}: {verdict['reason']}"
    )
    # Reports on time: every heartbeat at least (plus a probe interval and scheduling room).
    assert max(ages) <= HEARTBEAT + PROBE_INTERVAL + 1, ages
    assert sequences[-1] > sequences[0], "the node's reports kept coming"
    # One blocked call on the hung path however many cycles; threads and memory flat.
    assert nas.calls_while_hung() == 1, nas.calls_log.read_text()
    assert max(thread_counts) <= early_threads + 1, (early_threads, thread_counts)
    assert late_rss <= early_rss * 1.05 + 1024, (early_rss, late_rss)
    assert verdict["status"] == "fail" and "stuck" in verdict["reason"], verdict

    nas.release()
    took = wait_for(
        lambda: nas.mounts()[path]["state"] == "MOUNT_STATE_MOUNTED",
        HEARTBEAT + PROBE_INTERVAL + 10,
        "the NAS mounted again",
    )
    print(f"NAS released: mounted again at the collector after {took:.2f}s")
    metrics = scrape(nas.metrics_url)
    assert sample(metrics, "preflight_mount_stuck", node=NODE, path=path) == 0.0
    assert sample(metrics, "preflight_agent_up", node=NODE) == 1.0
