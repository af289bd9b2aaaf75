"""The probe-kind registry: one entry per kind, and runner, push policy, report and text
all follow it (no layer lists the kinds by hand)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import trustme

from agent.kinds import KINDS, by_name
from agent.probes import results as r
from agent.probes.clock import ClockFacts
from agent.runner import ProbeSet, run_cycle
from agent.snapshot import Snapshot, build_report
from agent.text import to_text
from preflight.v1 import report_pb2 as pb
from tests.support.procs import BIN, HttpsServer
from tests.support.profiles import local_target, write_profile

RESULTS: dict[str, object] = {
    "hardware": r.HardwareFacts(logical_cores=8, memory_total_bytes=16 << 30),
    "gpus": r.GpuFacts(pci_scanned=True, driver_status="not_installed"),
    "mounts": [r.MountResult(path="/mnt/nas", state="mounted", fs_type="nfs4")],
    "egress": [r.EgressResult(target="t", url="https://t/", up=True, http_status=200)],
    "clock": ClockFacts(available=True, synchronised=True, state="ok"),
}


def report_of(results: dict[str, object]) -> pb.NodeReport:
    return build_report(
        Snapshot(results=results),
        node_name="n",
        agent_version="0",
        instance_id="i",
        sequence=1,
        probe_interval=15,
        heartbeat_interval=30,
    )


def test_every_kind_is_registered_once_and_owns_its_report_section() -> None:
    assert [k.name for k in KINDS] == ["hardware", "gpus", "mounts", "egress", "clock"]
    sections = {
        "hardware": "hardware",
        "gpus": "gpus",
        "mounts": "mounts",
        "egress": "egress",
        "clock": "clock",
    }
    for kind in KINDS:
        report = report_of({kind.name: RESULTS[kind.name]})
        filled = {f.name for f, _ in report.ListFields()} - {
            "node_name",
            "agent_version",
            "instance_id",
            "sequence",
            "probe_interval_seconds",
            "heartbeat_interval_seconds",
        }
        assert filled == {sections[kind.name]}, kind.name
    with pytest.raises(KeyError, match="known: hardware, gpus, mounts, egress, clock"):
        by_name("clock_sync")


def test_the_signature_follows_each_kind() -> None:
    base = Snapshot(results=dict(RESULTS)).outcome_signature()
    changed = dict(RESULTS)
    changed["egress"] = [r.EgressResult(target="t", url="https://t/", up=False, reason="timeout")]
    assert Snapshot(results=changed).outcome_signature() != base
    # Timings are not outcomes: no push for them.
    timing = dict(RESULTS)
    timing["egress"] = [
        r.EgressResult(target="t", url="https://t/", up=True, http_status=200, total_seconds=9.0)
    ]
    assert Snapshot(results=timing).outcome_signature() == base


async def test_run_cycle_runs_the_registered_kinds_it_is_given() -> None:
    async def hardware() -> r.HardwareFacts:
        return r.HardwareFacts(logical_cores=1)

    async def egress() -> list[r.EgressResult]:
        raise OSError("socket table full")

    snapshot = await run_cycle(ProbeSet.of(hardware=(hardware, 1.0), egress=(egress, 1.0)))
    assert set(snapshot.results) == {"hardware"}
    assert [(f.probe, f.timed_out) for f in snapshot.failures] == [("egress", False)]
    with pytest.raises(ValueError, match="unknown probe kinds"):
        ProbeSet.of(ntp=(hardware, 1.0))


@pytest.mark.timeout(90)
def test_once_text_has_each_kinds_lines(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = HttpsServer(ca)
    try:
        profile = write_profile(tmp_path / "p.yaml", [local_target("local-site", server.port)])
        result = subprocess.run(
            [str(BIN / "preflight-agent"), "--once", "--profile", str(profile)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={"SSL_CERT_FILE": str(ca_file), "PATH": "/usr/bin:/bin"},
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("plan: ") and lines[1].endswith("(packaged_profile)")
    heads = [line.split(":")[0] for line in lines if not line.startswith(" ")]
    assert heads[2:6] == ["hardware", "gpus", "mounts", "egress"]
    assert any(line.strip().startswith("local-site") and "UP" in line for line in lines)
    assert to_text(report_of(RESULTS)).count("\n") >= 5
