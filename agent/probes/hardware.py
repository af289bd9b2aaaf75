"""Hardware facts of the node: CPU, memory, disk capacity, kernel, OS, architecture, boot time.

Everything comes from the host root (HostFS): /proc/cpuinfo, /proc/meminfo, /proc/stat,
/proc/sys/kernel/*, /etc/os-release and statvfs of a few well-known directories. Each
``parse_*`` function is pure (text in, values out) so fixture trees and hand-written strings
test it; ``collect_hardware`` glues reading and parsing and never raises for a missing file:
a missing fact stays zero or empty.
"""

from __future__ import annotations

import os
import shlex

from agent.hostfs import HostFS
from agent.probes.results import FilesystemUsage, HardwareFacts

__all__ = [
    "FILESYSTEM_ROLES",
    "CpuInfo",
    "collect_hardware",
    "parse_boot_time",
    "parse_cpuinfo",
    "parse_meminfo",
    "parse_os_release",
]

# (role, host path): statvfs'd when present. CRI-O keeps images in /var/lib/containers.
FILESYSTEM_ROLES: tuple[tuple[str, str], ...] = (
    ("root", "/"),
    ("kubelet", "/var/lib/kubelet"),
    ("container_runtime", "/var/lib/containerd"),
    ("container_runtime", "/var/lib/docker"),
    ("container_runtime", "/var/lib/containers"),
)

# Keys that name the CPU model, by architecture: x86 "model name", arm64 kernels give none
# (the DMI/"Hardware" line at best), POWER "cpu", RISC-V "uarch", s390 "processor 0: ...".
_MODEL_KEYS = ("model name", "Hardware", "cpu model", "cpu", "uarch", "Processor")


class CpuInfo:
    """What /proc/cpuinfo says: model name, logical CPUs, physical cores (None if unknown)."""

    def __init__(self, model: str, logical: int, physical: int | None) -> None:
        self.model = model
        self.logical = logical
        self.physical = physical


def parse_cpuinfo(text: str) -> CpuInfo:
    """Model, logical CPUs ("processor" blocks) and physical cores.

    Physical cores are the unique (physical id, core id) pairs; kernels that print neither
    (arm64, some hypervisors) leave it unknown (None).
    """
    logical = 0
    model = ""
    cores: set[tuple[str, str]] = set()
    block: dict[str, str] = {}

    def close_block() -> None:
        if "physical id" in block and "core id" in block:
            cores.add((block["physical id"], block["core id"]))

    for line in text.splitlines():
        if not line.strip():
            close_block()
            block = {}
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "processor":
            close_block()
            block = {}
            logical += 1
        block[key] = value
        if not model and value:
            for candidate in _MODEL_KEYS:
                if key == candidate:
                    model = value
                    break
    close_block()
    return CpuInfo(model=model, logical=logical, physical=len(cores) or None)


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as bytes per key ("MemTotal": ...); values without a unit stay counts."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or not fields:
            continue
        try:
            number = int(fields[0])
        except ValueError:
            continue
        if len(fields) > 1 and fields[1] == "kB":
            number *= 1024
        values[key.strip()] = number
    return values


def memory_available(meminfo: dict[str, int]) -> int:
    """MemAvailable, or the pre-3.14 kernel estimate MemFree + Buffers + Cached."""
    if "MemAvailable" in meminfo:
        return meminfo["MemAvailable"]
    return sum(meminfo.get(k, 0) for k in ("MemFree", "Buffers", "Cached"))


def parse_boot_time(stat_text: str) -> float | None:
    """The "btime" line of /proc/stat (Unix seconds)."""
    for line in stat_text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == "btime":
            try:
                return float(int(fields[1]))
            except ValueError:
                return None
    return None


def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5): KEY=value lines with shell quoting."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            words = shlex.split(raw)
        except ValueError:
            words = [raw.strip("\"'")]
        values[key.strip()] = " ".join(words)
    return values


def _physical_from_sysfs(host: HostFS) -> int | None:
    """Unique (package, core) pairs from sysfs topology, for kernels whose cpuinfo omits them."""
    try:
        names = host.listdir("sys/devices/system/cpu")
    except OSError:
        return None
    cores: set[tuple[str, str]] = set()
    for name in names:
        if not (name.startswith("cpu") and name[3:].isdigit()):
            continue
        topology = f"sys/devices/system/cpu/{name}/topology"
        package = host.read_text_or_none(f"{topology}/physical_package_id")
        core = host.read_text_or_none(f"{topology}/core_id")
        if package is not None and core is not None:
            cores.add((package.strip(), core.strip()))
    return len(cores) or None


def _filesystems(host: HostFS) -> list[FilesystemUsage]:
    usages: list[FilesystemUsage] = []
    for role, path in FILESYSTEM_ROLES:
        if role != "root" and not host.is_dir(path):
            continue
        try:
            st = host.statvfs(path)
        except OSError:
            continue
        # f_bavail, not f_bfree: what non-root writers (containers, kubelet) can still use.
        usages.append(
            FilesystemUsage(
                role=role,
                path=path,
                capacity_bytes=st.f_blocks * st.f_frsize,
                free_bytes=st.f_bavail * st.f_frsize,
            )
        )
    return usages


def collect_hardware(host: HostFS) -> HardwareFacts:
    """Read and parse every hardware fact of the host; missing files leave facts empty.

    Blocking (file reads, statvfs); the runner calls it in a thread under its deadline.
    """
    facts = HardwareFacts()

    cpuinfo_text = host.read_text_or_none("proc/cpuinfo")
    if cpuinfo_text is not None:
        cpu = parse_cpuinfo(cpuinfo_text)
        facts.cpu_model = cpu.model
        facts.logical_cores = cpu.logical
        physical = cpu.physical or _physical_from_sysfs(host)
        # Without topology each logical CPU is the best estimate of a core.
        facts.physical_cores = physical or cpu.logical

    meminfo_text = host.read_text_or_none("proc/meminfo")
    if meminfo_text is not None:
        meminfo = parse_meminfo(meminfo_text)
        facts.memory_total_bytes = meminfo.get("MemTotal", 0)
        facts.memory_available_bytes = memory_available(meminfo)

    facts.filesystems = _filesystems(host)

    release = host.read_text_or_none("proc/sys/kernel/osrelease")
    facts.kernel_release = release.strip() if release else ""

    os_release_text = host.read_text_or_none("etc/os-release")
    if os_release_text is None:
        os_release_text = host.read_text_or_none("usr/lib/os-release")
    if os_release_text is not None:
        os_release = parse_os_release(os_release_text)
        facts.os_release = os_release.get("PRETTY_NAME") or " ".join(
            v for v in (os_release.get("NAME", ""), os_release.get("VERSION", "")) if v
        )

    # /proc/sys/kernel/arch (Linux >= 6.1) names the host's machine even in a fixture tree;
    # otherwise the agent's own uname, which is the host kernel's (containers share it).
    arch = host.read_text_or_none("proc/sys/kernel/arch")
    facts.architecture = arch.strip() if arch and arch.strip() else os.uname().machine

    stat_text = host.read_text_or_none("proc/stat")
    if stat_text is not None:
        facts.boot_time = parse_boot_time(stat_text)
    return facts
