"""GPUs from three sources: a PCI scan of sysfs, the kernel driver's view, and NVML.

The PCI scan (vendor 0x10de, class VGA 0x0300xx or 3D controller 0x0302xx) needs no
driver, so a node whose driver is missing or broken still shows how many GPUs it holds.
The kernel driver's view (agent.probes.nvidia_kernel: bound driver per device, the nvidia
module and its procfs records) needs no NVML either, so an unprivileged pod sees how many
GPUs the driver took. NVML (``nvidia-ml-py``, imported as ``pynvml``) adds detail (memory,
MIG, CUDA) where the NVIDIA container runtime gives the pod access. NVML that cannot be
reached while the module is loaded is a deployment fact (``unreachable``), never "no
driver"; the collector compares PCI, kernel and Kubernetes' allocatable ``nvidia.com/gpu``.

NVML is injectable (``collect_gpus(host, nvml=...)``) because no GPU exists where the tests
run; the PCI side always reads a (fixture or real) sysfs tree.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from agent.hostfs import HostFS
from agent.probes.nvidia_kernel import bound_driver, read_kernel_gpus, read_module
from agent.probes.results import GpuDevice, GpuFacts, MigDevice, PciDevice

__all__ = [
    "NVIDIA_VENDOR_ID",
    "Nvml",
    "collect_gpus",
    "is_nvidia_gpu",
    "load_nvml",
    "scan_pci",
]

NVIDIA_VENDOR_ID = "0x10de"
# PCI base class 0x03 (display), subclass 0x00 (VGA compatible) or 0x02 (3D controller);
# NVSwitches (0x0680) and audio functions (0x0403) of the same vendor are not GPUs.
GPU_CLASS_PREFIXES = ("0x0300", "0x0302")
PCI_DEVICES_DIR = "sys/bus/pci/devices"
# nvml.h return codes (pynvml stays an optional import, so they are spelled out here).
# NO_PERMISSION: /dev/nvidiactl exists but may not be opened (the device cgroup);
# DRIVER_NOT_LOADED: no usable device node; LIBRARY_NOT_FOUND: no libnvidia-ml.so.1.
# With the module loaded on the host, each means this pod cannot reach the driver.
_NVML_NO_PERMISSION = 4
_NVML_DRIVER_NOT_LOADED = 9
_NVML_LIBRARY_NOT_FOUND = 12
_NVML_UNREACHABLE = (_NVML_NO_PERMISSION, _NVML_DRIVER_NOT_LOADED, _NVML_LIBRARY_NOT_FOUND)
# LIB_RM_VERSION_MISMATCH: "Driver/library version mismatch" (user space upgraded, the
# old module still loaded): workloads fail the same way.
_NVML_LIB_RM_VERSION_MISMATCH = 18
_NVML_DEVICE_MIG_ENABLE = 1
_NVML_NOT_FOUND = 6


class Nvml(Protocol):
    """The part of the pynvml module the probe uses (the module itself satisfies it)."""

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlSystemGetDriverVersion(self) -> str | bytes: ...
    def nvmlSystemGetCudaDriverVersion(self) -> int: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...
    def nvmlDeviceGetName(self, handle: Any) -> str | bytes: ...
    def nvmlDeviceGetUUID(self, handle: Any) -> str | bytes: ...
    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any: ...
    def nvmlDeviceGetPciInfo(self, handle: Any) -> Any: ...


def is_nvidia_gpu(vendor: str, class_code: str) -> bool:
    """True for an NVIDIA display/3D controller given sysfs "vendor" and "class" text."""
    vendor = vendor.strip().lower()
    class_code = class_code.strip().lower()
    return vendor == NVIDIA_VENDOR_ID and class_code.startswith(GPU_CLASS_PREFIXES)


def scan_pci(host: HostFS) -> tuple[bool, list[PciDevice]]:
    """(scanned, NVIDIA GPUs) from <root>/sys/bus/pci/devices; scanned is False without it."""
    try:
        addresses = host.listdir(PCI_DEVICES_DIR)
    except OSError:
        return False, []
    devices: list[PciDevice] = []
    for address in addresses:
        base = f"{PCI_DEVICES_DIR}/{address}"
        vendor = host.read_text_or_none(f"{base}/vendor")
        class_code = host.read_text_or_none(f"{base}/class")
        if vendor is None or class_code is None or not is_nvidia_gpu(vendor, class_code):
            continue
        device = host.read_text_or_none(f"{base}/device") or ""
        devices.append(
            PciDevice(
                address=address,
                vendor_id=vendor.strip().lower(),
                device_id=device.strip().lower(),
                class_code=class_code.strip().lower(),
                kernel_driver=bound_driver(host, base),
            )
        )
    return True, devices


def load_nvml() -> Nvml | None:
    """The pynvml module, or None when nvidia-ml-py is not installed."""
    try:
        module: Nvml = importlib.import_module("pynvml")  # type: ignore[assignment]
    except ImportError:
        return None
    return module


def _text(value: str | bytes) -> str:
    # Older nvidia-ml-py releases return bytes, newer ones str.
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _cuda_version(encoded: int) -> str:
    """NVML's CUDA driver version 12040 -> "12.4"."""
    return f"{encoded // 1000}.{(encoded % 1000) // 10}"


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _mig_enabled(nvml: Nvml, handle: Any) -> bool:
    # Optional detail: older bindings lack the call, non-MIG GPUs answer NOT_SUPPORTED.
    get_mode = getattr(nvml, "nvmlDeviceGetMigMode", None)
    if get_mode is None:
        return False
    try:
        current = get_mode(handle)[0]
    except Exception:
        return False
    return bool(current == _NVML_DEVICE_MIG_ENABLE)


# A100/H100 offer at most 7 MIG instances; the cap keeps a confused driver cheap.
MAX_MIG_DEVICES = 16


def _mig_devices(nvml: Nvml, handle: Any, problems: list[str], index: int) -> list[MigDevice]:
    """The MIG instances of a MIG-enabled GPU (optional NVML calls: older bindings lack them)."""
    get_max = getattr(nvml, "nvmlDeviceGetMaxMigDeviceCount", None)
    get_mig = getattr(nvml, "nvmlDeviceGetMigDeviceHandleByIndex", None)
    if get_max is None or get_mig is None:
        return []
    devices: list[MigDevice] = []
    try:
        slots = min(int(get_max(handle)), MAX_MIG_DEVICES)
    except Exception as exc:
        problems.append(f"GPU {index} MIG count: {_error_text(exc)}")
        return devices
    for slot in range(slots):
        try:
            mig = get_mig(handle, slot)
        except Exception as exc:
            # NVML_ERROR_NOT_FOUND: an empty slot (fewer instances than the maximum).
            if getattr(exc, "value", None) != _NVML_NOT_FOUND:
                problems.append(f"GPU {index} MIG {slot}: {_error_text(exc)}")
            continue
        try:
            devices.append(
                MigDevice(
                    index=slot,
                    uuid=_text(nvml.nvmlDeviceGetUUID(mig)),
                    name=_text(nvml.nvmlDeviceGetName(mig)),
                    memory_total_bytes=int(nvml.nvmlDeviceGetMemoryInfo(mig).total),
                )
            )
        except Exception as exc:
            problems.append(f"GPU {index} MIG {slot}: {_error_text(exc)}")
    return devices


def _init_failed(exc: BaseException, facts: GpuFacts) -> None:
    code = getattr(exc, "value", None)
    if code == _NVML_LIB_RM_VERSION_MISMATCH:
        facts.driver_status = "version_mismatch"
        facts.driver_message = f"NVML and the nvidia kernel module differ ({_error_text(exc)})"
    elif code in _NVML_UNREACHABLE and facts.kernel_module == "loaded":
        facts.driver_status = "unreachable"
        facts.driver_message = (
            "nvidia module loaded on the host, NVML not reachable from the agent "
            f"({_error_text(exc)})"
        )
    elif code == _NVML_LIBRARY_NOT_FOUND:
        facts.driver_status = "not_installed"
        facts.driver_message = f"NVIDIA driver library not found ({_error_text(exc)})"
    elif code == _NVML_DRIVER_NOT_LOADED and facts.kernel_module == "not_loaded":
        facts.driver_status = "not_installed"
        facts.driver_message = f"no nvidia kernel module on the host ({_error_text(exc)})"
    else:
        facts.driver_status = "error"
        facts.driver_message = f"nvmlInit failed: {_error_text(exc)}"


def _query_nvml(nvml: Nvml, facts: GpuFacts) -> None:
    try:
        nvml.nvmlInit()
    except Exception as exc:
        _init_failed(exc, facts)
        return
    problems: list[str] = []
    try:
        facts.driver_status = "loaded"
        facts.driver_version = _text(nvml.nvmlSystemGetDriverVersion())
        try:
            facts.cuda_version = _cuda_version(int(nvml.nvmlSystemGetCudaDriverVersion()))
        except Exception as exc:
            problems.append(f"CUDA version: {_error_text(exc)}")
        count = int(nvml.nvmlDeviceGetCount())
        for index in range(count):
            # One lost GPU (NVML_ERROR_GPU_IS_LOST) must not hide the others.
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                device = GpuDevice(
                    index=index,
                    uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                    name=_text(nvml.nvmlDeviceGetName(handle)),
                    memory_total_bytes=int(nvml.nvmlDeviceGetMemoryInfo(handle).total),
                    mig_enabled=_mig_enabled(nvml, handle),
                )
                try:
                    device.pci_bus_id = _text(nvml.nvmlDeviceGetPciInfo(handle).busId)
                except Exception as exc:
                    problems.append(f"GPU {index} PCI info: {_error_text(exc)}")
                if device.mig_enabled:
                    device.mig_devices = _mig_devices(nvml, handle, problems, index)
                facts.devices.append(device)
            except Exception as exc:
                problems.append(f"GPU {index}: {_error_text(exc)}")
    except Exception as exc:
        facts.driver_status = "error"
        problems.append(_error_text(exc))
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception as exc:
            problems.append(f"nvmlShutdown: {_error_text(exc)}")
    facts.driver_message = "; ".join(problems)


def collect_gpus(host: HostFS, nvml: Nvml | None = None) -> GpuFacts:
    """PCI scan, the kernel driver's view, then NVML; never raises for a missing driver.

    `nvml` defaults to the real pynvml module when nvidia-ml-py is installed. Blocking
    (NVML can take seconds on a busy driver); the runner calls it in a thread.
    """
    facts = GpuFacts()
    facts.pci_scanned, facts.pci_devices = scan_pci(host)
    facts.kernel_module, facts.kernel_module_version = read_module(host)
    facts.kernel_gpus = read_kernel_gpus(host)
    backend = nvml if nvml is not None else load_nvml()
    if backend is None:
        if facts.kernel_module == "loaded":
            facts.driver_status = "unreachable"
            facts.driver_message = (
                "nvidia module loaded on the host, nvidia-ml-py (pynvml) not installed"
            )
        else:
            facts.driver_status = "not_installed"
            facts.driver_message = "nvidia-ml-py (pynvml) is not installed"
        return facts
    _query_nvml(backend, facts)
    return facts
