"""The NVIDIA kernel driver's view of the GPUs, read from host sysfs and procfs (no NVML).

An unprivileged agent pod without the NVIDIA container runtime cannot load
``libnvidia-ml.so.1`` nor open ``/dev/nvidia*``, yet the host's sysfs and procfs (under
``--host-root``) still say what the kernel knows:

- which driver each PCI GPU is bound to: the device's ``driver`` symlink, else the
  ``DRIVER=`` line of its ``uevent`` (``nvidia``, ``vfio-pci`` for passthrough,
  ``nouveau``, or none);
- whether the nvidia module is loaded (``/sys/module/nvidia``) and its version
  (``/proc/driver/nvidia/version``, "NVRM version: ..." as nv-procfs.c prints it);
- the driver's own record of each GPU it took (``/proc/driver/nvidia/gpus/<bus>/information``:
  Model, GPU UUID, Bus Location, GPU Excluded).

The formats are those of NVIDIA's open-gpu-kernel-modules ``kernel-open/nvidia/nv-procfs.c``
and Linux's ``drivers/pci/pci-driver.c`` (see tests/fixtures/hostfs/README.md). Everything
here only parses; a missing or garbled file is a missing fact, never an exception.
"""

from __future__ import annotations

import re

from agent.hostfs import HostFS
from agent.probes.results import KernelGpu, KernelModuleState

__all__ = [
    "NVIDIA_PROC_DIR",
    "bound_driver",
    "parse_information",
    "parse_nvrm_version",
    "read_kernel_gpus",
    "read_module",
]

NVIDIA_PROC_DIR = "proc/driver/nvidia"
SYS_MODULE_DIR = "sys/module"
# These kernel files are a few hundred bytes; a small cap keeps a hostile tree cheap.
_MAX_BYTES = 64 * 1024
# The driver supports at most 32 GPUs per host (NV_MAX_GPUS); a few more entries than
# that can only be a broken or hostile tree, and reading them all would cost for nothing.
MAX_PROC_GPUS = 64
_VERSION = re.compile(r"(?<![\w.])(\d+\.\d+(?:\.\d+)?)(?![\w.])")


def bound_driver(host: HostFS, device_dir: str) -> str:
    """The kernel driver a PCI device is bound to ("" when none), from sysfs."""
    try:
        # /sys/bus/pci/devices/<addr>/driver -> ../../../bus/pci/drivers/<name>
        return host.readlink(f"{device_dir}/driver").rstrip("/").rsplit("/", 1)[-1]
    except (OSError, ValueError):
        pass
    # A copied or archived tree keeps uevent but may lose the link; the driver core
    # writes DRIVER=<name> there only while a driver is bound.
    uevent = host.read_text_or_none(f"{device_dir}/uevent", _MAX_BYTES) or ""
    for line in uevent.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "DRIVER":
            return value.strip()
    return ""


def parse_nvrm_version(text: str) -> str:
    """The driver version from /proc/driver/nvidia/version ("" when absent).

    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.129.03  Thu Oct 19 ..." and the
    open module's "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.14
    Release Build ..." both carry it as the first dotted number of the NVRM line.
    """
    for line in text.splitlines():
        if line.startswith("NVRM version:"):
            match = _VERSION.search(line)
            return match.group(1) if match else ""
    return ""


def parse_information(text: str, bus: str) -> KernelGpu:
    """One /proc/driver/nvidia/gpus/<bus>/information file ("Key: \\t value" lines)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return KernelGpu(
        bus_location=fields.get("Bus Location") or bus,
        model=fields.get("Model", ""),
        uuid=fields.get("GPU UUID", ""),
        excluded=fields.get("GPU Excluded", "").lower() == "yes",
    )


def read_module(host: HostFS) -> tuple[KernelModuleState, str]:
    """(state of the nvidia kernel module, its version) on the host."""
    version_text = host.read_text_or_none(f"{NVIDIA_PROC_DIR}/version", _MAX_BYTES)
    if version_text is not None:
        return "loaded", parse_nvrm_version(version_text)
    if host.is_dir(f"{SYS_MODULE_DIR}/nvidia"):
        # procfs not visible (a restricted /proc), the module's sysfs directory is.
        sys_version = host.read_text_or_none(f"{SYS_MODULE_DIR}/nvidia/version", _MAX_BYTES)
        return "loaded", (sys_version or "").strip()[:64]
    if host.is_dir(SYS_MODULE_DIR):
        return "not_loaded", ""
    return "unknown", ""


def read_kernel_gpus(host: HostFS) -> list[KernelGpu]:
    """The driver's record of every GPU it took, sorted by bus location."""
    try:
        buses = host.listdir(f"{NVIDIA_PROC_DIR}/gpus")
    except (OSError, ValueError):
        return []
    gpus = []
    for bus in buses[:MAX_PROC_GPUS]:
        text = host.read_text_or_none(f"{NVIDIA_PROC_DIR}/gpus/{bus}/information", _MAX_BYTES)
        if text is not None:
            gpus.append(parse_information(text, bus))
    return gpus
