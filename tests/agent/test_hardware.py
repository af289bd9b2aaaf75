"""Hardware facts from fixture trees of /proc and /sys, and from this machine."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from agent.hostfs import HostFS
from agent.probes.hardware import (
    collect_hardware,
    parse_boot_time,
    parse_cpuinfo,
    parse_meminfo,
    parse_os_release,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hostfs"


def test_cpu_only_node() -> None:
    facts = collect_hardware(HostFS(FIXTURES / "cpu-only"))
    assert facts.cpu_model == "AMD EPYC 7282 16-Core Processor"
    assert facts.logical_cores == 8  # 2 sockets x 2 cores x 2 threads
    assert facts.physical_cores == 4
    assert facts.memory_total_bytes == 32_000_000 * 1024
    assert facts.memory_available_bytes == 30_000_000 * 1024
    assert facts.kernel_release == "5.15.0-91-generic"
    assert facts.os_release == "Ubuntu 22.04.3 LTS"
    assert facts.architecture == "x86_64"
    assert facts.boot_time == 1_700_000_000.0
    roles = {(f.role, f.path) for f in facts.filesystems}
    assert roles == {
        ("root", "/"),
        ("kubelet", "/var/lib/kubelet"),
        ("container_runtime", "/var/lib/containerd"),
    }
    for usage in facts.filesystems:
        assert usage.capacity_bytes > 0
        assert 0 <= usage.free_bytes <= usage.capacity_bytes


def test_dgx_node_counts_sockets_and_hyperthreads() -> None:
    facts = collect_hardware(HostFS(FIXTURES / "dgx-8gpu"))
    assert facts.logical_cores == 64
    assert facts.physical_cores == 32
    assert facts.memory_total_bytes == 2_113_407_384 * 1024
    assert facts.os_release == "Ubuntu 20.04.6 LTS"
    assert {f.path for f in facts.filesystems} == {"/", "/var/lib/kubelet", "/var/lib/docker"}


def test_arm_node_without_pci_or_memavailable() -> None:
    facts = collect_hardware(HostFS(FIXTURES / "no-pci"))
    assert facts.logical_cores == 4
    assert facts.physical_cores == 4  # from sysfs topology: arm64 cpuinfo has no core ids
    assert facts.architecture == "aarch64"
    assert facts.os_release == "Debian GNU/Linux 12 (bookworm)"  # from usr/lib/os-release
    # Kernels before 3.14 have no MemAvailable: MemFree + Buffers + Cached.
    assert facts.memory_available_bytes == (4_000_000 + 204_800 + 1_048_576) * 1024


def test_empty_root_gives_empty_facts(tmp_path: Path) -> None:
    facts = collect_hardware(HostFS(tmp_path))
    assert facts.logical_cores == 0
    assert facts.memory_total_bytes == 0
    assert facts.kernel_release == ""
    assert facts.boot_time is None
    assert [f.role for f in facts.filesystems] == ["root"]


def test_absent_runtime_dirs_are_left_out(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "cpu-only", tmp_path / "root")
    shutil.rmtree(tmp_path / "root" / "var" / "lib" / "containerd")
    facts = collect_hardware(HostFS(tmp_path / "root"))
    assert [f.role for f in facts.filesystems] == ["root", "kubelet"]


def test_parsers_on_odd_input() -> None:
    cpu = parse_cpuinfo("processor : 0\nmodel name : X\n\nprocessor : 1\nmodel name : X\n")
    assert (cpu.model, cpu.logical, cpu.physical) == ("X", 2, None)
    assert parse_meminfo("MemTotal: 10 kB\nHugePages_Total: 3\nBogus line\nX: y kB\n") == {
        "MemTotal": 10240,
        "HugePages_Total": 3,
    }
    assert parse_boot_time("cpu 1 2 3\nbtime notanumber\n") is None
    assert parse_boot_time("") is None
    assert parse_os_release("# c\nPRETTY_NAME='Rocky Linux 9.3 (Blue Onyx)'\nID=rocky\n") == {
        "PRETTY_NAME": "Rocky Linux 9.3 (Blue Onyx)",
        "ID": "rocky",
    }
    assert parse_os_release('NAME="unterminated\n')["NAME"] == "unterminated"


def test_live_machine_matches_os() -> None:
    facts = collect_hardware(HostFS(Path("/")))
    assert facts.logical_cores == os.cpu_count()
    assert 1 <= facts.physical_cores <= facts.logical_cores
    with open("/proc/meminfo") as f:
        total_kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    assert facts.memory_total_bytes == total_kb * 1024
    assert 0 < facts.memory_available_bytes <= facts.memory_total_bytes
    assert facts.kernel_release == os.uname().release
    assert facts.architecture == os.uname().machine
    assert facts.boot_time is not None and facts.boot_time > 1e9
    assert facts.filesystems[0].role == "root" and facts.filesystems[0].capacity_bytes > 0
