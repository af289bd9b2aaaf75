"""`preflight check` as a real process: table, JSON, --output and the exit codes 0/1/2/3.

The machine under test is a fixture host root (8 healthy A100s, an NFS share in its
mount table) probed by the agent's own code; egress goes to real HTTPS servers on
loopback (private trustme CA through SSL_CERT_FILE); the Kubernetes API is kmock,
reached through a kubeconfig file exactly as an operator's would be.
"""

# ruff: noqa: F811 — pytest injects the imported `api` fixture by parameter name

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from agent.kinds import KINDS
from preflight.profile import load_profile
from tests.support.cli_cluster import (
    AS_NORMAL_USER,
    Ran,
    cli_env,
    host_root,
    node_list,
    run_preflight,
    write_agent_config,
    write_profile,
)
from tests.support.kube import FakeApi, api, version_info  # noqa: F401
from tests.support.kube_api import write_kubeconfig
from tests.support.procs import HttpsServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

NODE = "check-node"


class Machine:
    """Everything `preflight check` needs, built once per test in tmp_path."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ca = ca = trustme.CA()
        self.ca_file = tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.servers = {name: HttpsServer(ca) for name in ("charts", "registry", "telemetry")}
        self.profile = write_profile(
            tmp / "profile.yaml", {n: s.port for n, s in self.servers.items()}
        )
        self.root = host_root(tmp)
        self.agent = write_agent_config(tmp / "agent.yaml", host_root=str(self.root))
        self.env = cli_env(tmp, SSL_CERT_FILE=str(self.ca_file))

    def args(self, *extra: str) -> list[str]:
        return [
            "check",
            "--profile",
            str(self.profile),
            "--config",
            str(self.agent),
            "--node-name",
            NODE,
            *extra,
        ]

    async def check(self, *extra: str, kubeconfig: Path | None = None) -> Ran:
        more = ["--kubeconfig", str(kubeconfig)] if kubeconfig else []
        return await run_preflight(*self.args(*more, *extra), env=self.env)

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    m = Machine(tmp_path)
    yield m
    m.close()


def statuses(ran: Ran) -> dict[str, str]:
    return {r["requirement"]: r["status"] for r in ran.json()["requirements"]}


async def test_passing_machine_table_exit_0(machine: Machine, api: FakeApi) -> None:
    api.nodes = node_list({NODE: 8})
    kubeconfig = write_kubeconfig(machine.tmp / "kubeconfig", api.host)
    ran = await machine.check(kubeconfig=kubeconfig)
    assert ran.code == 0, ran.stdout + ran.stderr
    print(ran.stderr + ran.stdout)  # docs/usage.md shows this run (pytest -s)
    lines = ran.stdout.splitlines()
    header = next(
        i for i, line in enumerate(lines) if line.split()[:2] == ["requirement", "status"]
    )
    body = lines[header + 2 :]
    rows = body[: next(i for i, line in enumerate(body) if not line.strip())]
    judged = [
        line.split()[0] for line in rows if len(line.split()) > 1 and line.split()[1] == "PASS"
    ]
    assert judged == [
        "kubernetes_version",
        "control_plane_hardware",
        "shared_volume",
        "egress_install",
        "egress_runtime",
        "gpu_nodes",
    ]
    # Aligned: every status word starts in the same column as the header's.
    column = lines[header].index("status")
    for name in judged:
        line = next(line for line in rows if line.startswith(f" {name}") or line.startswith(name))
        assert line.index("PASS") == column, line
    assert "Kubernetes v1.17.9" in ran.stdout
    assert "1 GPU node, 8 GPUs, counts agree" in ran.stdout
    assert "not judged here: agent_coverage" in ran.stdout
    assert "result: PASS (6 pass) · exit 0" in ran.stdout
    assert "\x1b[" not in ran.stdout  # piped: no colour codes
    # The progress line names what it waits for, then says when the probes were done.
    assert "preflight check: probing this machine" in ran.stderr
    kinds = ", ".join(k.name for k in KINDS)  # every registered probe kind, then the API
    assert f"waiting for {kinds}, kubernetes" in ran.stderr
    assert "preflight check: probes done in" in ran.stderr


async def test_warning_machine_json_exit_1(machine: Machine, api: FakeApi) -> None:
    api.version = version_info("v1.16.15")
    api.nodes = node_list({NODE: 8}, kubelet="v1.16.15")
    kubeconfig = write_kubeconfig(machine.tmp / "kubeconfig", api.host)
    ran = await machine.check("--format", "json", "--quiet", kubeconfig=kubeconfig)
    assert ran.code == 1, ran.stdout + ran.stderr
    assert ran.stderr == ""  # --quiet: no progress line
    doc = ran.json()
    assert doc["schema"] == "preflight.verdicts/v1"
    assert doc["command"] == "check"
    assert doc["worst"] == "warn" and doc["exit_code"] == 1
    assert doc["source"] == {"node": NODE}
    assert doc["kubernetes"]["available"] is True
    assert doc["kubernetes"]["server_version"] == "v1.16.15"
    assert doc["counts"] == {"pass": 5, "warn": 1, "fail": 0, "unknown": 0}
    assert statuses(ran)["kubernetes_version"] == "warn"
    assert doc["ready"] == {"install": True, "runtime": True}
    assert doc["skipped"][0]["requirement"] == "agent_coverage"
    # The report travels along for support: the agent's own facts of this machine.
    assert doc["report"]["node_name"] == NODE
    assert doc["report"]["gpus"]["kernel_driver_count"] == 8
    # The document has exactly the fields docs/usage.md documents for its schema.
    assert set(doc) == documented_json_fields()


def documented_json_fields() -> set[str]:
    usage = (Path(__file__).resolve().parents[2] / "docs" / "usage.md").read_text()
    table = usage.split("schema `preflight.verdicts/v1`", 1)[1].split("Example", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE))


async def test_failing_machine_exit_2_names_node_and_target(machine: Machine, api: FakeApi) -> None:
    api.nodes = node_list({NODE: 8})
    machine.servers["registry"].stop()  # refused from now on
    kubeconfig = write_kubeconfig(machine.tmp / "kubeconfig", api.host)
    out = machine.tmp / "result.json"
    ran = await machine.check("--format", "json", "--output", str(out), kubeconfig=kubeconfig)
    assert ran.code == 2, ran.stdout + ran.stderr
    # --output gets the JSON, the terminal still the table.
    assert "result: FAIL" in ran.stdout
    saved = Ran(0, out.read_text(), "")
    doc = saved.json()
    failing = next(r for r in doc["requirements"] if r["status"] == "fail")
    registry = "registry"
    assert failing["requirement"] in ("egress_install", "egress_runtime")
    assert failing["nodes"] == [NODE] and failing["targets"] == [registry]
    assert f"{NODE} → {registry}: connect_refused" in failing["reason"]
    assert (
        doc["ready"]["install" if failing["requirement"] == "egress_install" else "runtime"]
        is False
    )


async def test_without_kubernetes_exit_3_unknown(machine: Machine) -> None:
    ran = await machine.check()  # HOME has no .kube/config, KUBECONFIG unset
    assert ran.code == 3, ran.stdout + ran.stderr
    assert "standalone: no Kubernetes API configured" in ran.stdout
    assert "result: UNKNOWN" in ran.stdout
    ran_json = await machine.check("--format", "json", "--quiet")
    got = statuses(ran_json)
    assert got["kubernetes_version"] == "unknown"
    assert got["control_plane_hardware"] == "unknown"
    # The rest is judged from this machine alone, and passes.
    assert got["shared_volume"] == got["egress_install"] == got["gpu_nodes"] == "pass"


async def test_kubeconfig_found_through_the_environment(machine: Machine, api: FakeApi) -> None:
    api.nodes = node_list({NODE: 8})
    kubeconfig = write_kubeconfig(machine.tmp / "kubeconfig", api.host)
    machine.env["KUBECONFIG"] = str(kubeconfig)
    ran = await machine.check("--format", "json", "--quiet")
    assert ran.code == 0, ran.stdout + ran.stderr
    assert api.node_requests  # the same adapter as the collector read kmock's node list


async def test_bad_usage_and_bad_config_exit_3(machine: Machine) -> None:
    ran = await run_preflight("check", "--format", "xml", env=machine.env)
    assert ran.code == 3 and "invalid choice" in ran.stderr
    broken = machine.tmp / "broken.yaml"
    broken.write_text("name: x\nkubernetes_version: {minimum: '1.15'}\nbogus: 1\n")
    ran = await run_preflight("check", "--profile", str(broken), env=machine.env)
    assert ran.code == 3
    assert f"{broken}: key 'bogus': unknown key" in ran.stderr
    ran = await run_preflight("check", "--profile", "no-such-profile", env=machine.env)
    assert ran.code == 3 and "neither a shipped profile" in ran.stderr


async def test_normal_user_is_told_what_was_not_read(machine: Machine) -> None:
    records = machine.root / "proc" / "driver" / "nvidia" / "gpus"
    records.chmod(0o000)
    try:
        ran = await run_preflight(
            *machine.args("--format", "json", "--quiet"), env=machine.env, prefix=AS_NORMAL_USER
        )
    finally:
        records.chmod(0o755)
    doc = ran.json()
    notes = " ".join(doc["notes"])
    assert "not readable as uid" in notes and "driver's GPU records" in notes, notes
    # It still ran every probe and judged: the GPUs are counted from sysfs bindings.
    assert doc["report"]["gpus"]["pci_count"] == 8
    assert {r["requirement"] for r in doc["requirements"]} >= {"gpu_nodes", "egress_install"}


async def test_root_gets_no_normal_user_notes(machine: Machine) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to compare with the normal-user run")
    ran = await machine.check("--format", "json", "--quiet")
    assert not [n for n in ran.json()["notes"] if "as uid" in n]


async def test_a_newer_profile_judges_its_own_requirements(machine: Machine) -> None:
    # runai-2.18 lists its requirements (add-ons, system nodes, clock...): check judges
    # exactly those, as the collector would, with agent_coverage left to the collector.
    ran = await run_preflight(
        "check",
        "--profile",
        "runai-2.18",
        "--config",
        str(machine.agent),
        "--node-name",
        NODE,
        "--format",
        "json",
        "--quiet",
        env=machine.env,
    )
    doc = ran.json()
    wanted = set(load_profile("runai-2.18").requirement_phases()) - {"agent_coverage"}
    assert {r["requirement"] for r in doc["requirements"]} == wanted
    assert doc["profile"] == "runai-2.18"
    assert ran.code == doc["exit_code"] and ran.code in (2, 3)


async def test_mirror_probes_a_target_at_its_internal_address(
    machine: Machine, api: FakeApi
) -> None:
    api.nodes = node_list({NODE: 8})
    kubeconfig = write_kubeconfig(machine.tmp / "kubeconfig", api.host)
    machine.servers["registry"].stop()  # the profile's address refuses: an air-gapped site
    mirror = HttpsServer(machine.ca)
    mirrored = ("--format", "json", "--quiet", "--mirror", f"registry=localhost:{mirror.port}")
    try:
        ran = await machine.check(*mirrored, kubeconfig=kubeconfig)
        assert ran.code == 0, ran.stdout + ran.stderr
        doc = ran.json()
        assert f"registry probed at its mirror localhost:{mirror.port}" in " ".join(doc["notes"])
        # The target keeps its profile name; only where it is probed changed.
        probed = {e["target"]: e for e in doc["report"]["egress"]}
        assert probed["registry"]["outcome"] == "OUTCOME_UP"
    finally:
        mirror.stop()
    # The mirror down: the failure names the mirror, not the profile's address.
    ran = await machine.check(*mirrored, kubeconfig=kubeconfig)
    assert ran.code == 2, ran.stdout + ran.stderr
    failing = next(r for r in ran.json()["requirements"] if r["status"] == "fail")
    assert f"registry (mirror localhost:{mirror.port})" in failing["reason"]
    # A target the profile does not have, or no address: a usage error, nothing probed.
    ran = await machine.check("--mirror", "nosuch=registry.corp:5000")
    assert ran.code == 3 and "no target 'nosuch' in profile local-test" in ran.stderr
    ran = await machine.check("--mirror", "registry")
    assert ran.code == 3 and "expected TARGET=HOST[:PORT]" in ran.stderr
