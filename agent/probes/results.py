"""Plain result types every probe returns; agent.report turns them into protobuf.

Probes never import the generated wire code: these dataclasses are the boundary.
Reason and phase values are the closed enums of DESIGN.md §4 as lower-case strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FailureReason = Literal[
    "dns_nxdomain",
    "dns_timeout",
    "dns_error",
    "connect_refused",
    "connect_timeout",
    "network_unreachable",
    "proxy_connect_failed",
    "proxy_denied",
    "proxy_auth_required",
    "tls_handshake_failed",
    "tls_untrusted",
    "tls_hostname_mismatch",
    "tls_expired",
    "http_unexpected_status",
    "timeout",
]
FAILURE_REASONS: tuple[FailureReason, ...] = FailureReason.__args__  # type: ignore[attr-defined]

Phase = Literal["resolve", "connect", "proxy_connect", "tls", "request", "transfer"]
PHASES: tuple[Phase, ...] = Phase.__args__  # type: ignore[attr-defined]

MountState = Literal["mounted", "not_mounted", "missing", "stuck", "error"]
WriteCheck = Literal["not_expected", "ok", "failed"]
# NVML's answer: "loaded" (it answered), "not_installed" (no library and no nvidia kernel
# module), "unreachable" (the module is loaded but this process cannot reach it through
# NVML: a deployment fact), "version_mismatch" (NVML's library and the loaded kernel
# module differ), "error" (anything else).
DriverStatus = Literal["loaded", "not_installed", "unreachable", "version_mismatch", "error"]
# Whether the host's nvidia kernel module is loaded ("unknown": neither /sys/module nor
# /proc/driver could be read).
KernelModuleState = Literal["unknown", "not_loaded", "loaded"]


@dataclass
class FilesystemUsage:
    role: str  # "root", "kubelet" or "container_runtime"
    path: str
    capacity_bytes: int
    free_bytes: int


@dataclass
class HardwareFacts:
    cpu_model: str = ""
    logical_cores: int = 0
    physical_cores: int = 0
    memory_total_bytes: int = 0
    memory_available_bytes: int = 0
    filesystems: list[FilesystemUsage] = field(default_factory=list)
    kernel_release: str = ""
    os_release: str = ""
    architecture: str = ""
    boot_time: float | None = None  # Unix seconds


@dataclass
class PciDevice:
    address: str
    vendor_id: str
    device_id: str
    class_code: str
    # The kernel driver the device is bound to ("nvidia", "vfio-pci", "nouveau", ...);
    # "" when none is bound.
    kernel_driver: str = ""


@dataclass
class MigDevice:
    """One MIG instance of a GPU, as NVML lists it."""

    index: int
    uuid: str
    name: str
    memory_total_bytes: int


@dataclass
class GpuDevice:
    index: int
    uuid: str
    name: str
    memory_total_bytes: int
    pci_bus_id: str = ""
    mig_enabled: bool = False
    mig_devices: list[MigDevice] = field(default_factory=list)


@dataclass
class KernelGpu:
    """One GPU as the nvidia kernel module records it (/proc/driver/nvidia/gpus/<bus>)."""

    bus_location: str
    model: str = ""
    uuid: str = ""
    excluded: bool = False


@dataclass
class GpuFacts:
    pci_scanned: bool = False
    pci_devices: list[PciDevice] = field(default_factory=list)
    driver_status: DriverStatus = "not_installed"
    driver_message: str = ""
    driver_version: str = ""
    cuda_version: str = ""
    devices: list[GpuDevice] = field(default_factory=list)
    # The kernel driver's view, read from host sysfs/procfs without NVML.
    kernel_module: KernelModuleState = "unknown"
    kernel_module_version: str = ""
    kernel_gpus: list[KernelGpu] = field(default_factory=list)

    def kernel_driver_count(self) -> int:
        """GPUs the nvidia kernel module drives: bound to it in sysfs or recorded in its
        procfs (it records only GPUs it took), less those it was told to exclude."""
        excluded = {g.bus_location.lower() for g in self.kernel_gpus if g.excluded}
        driven = {d.address.lower() for d in self.pci_devices if d.kernel_driver == "nvidia"}
        driven |= {g.bus_location.lower() for g in self.kernel_gpus}
        return len(driven - excluded)

    def passthrough_count(self) -> int:
        """PCI GPUs bound to vfio-pci: handed to virtual machines, not lost."""
        return sum(1 for d in self.pci_devices if d.kernel_driver == "vfio-pci")


@dataclass
class PeerMarker:
    node_name: str
    nonce: str
    written_at: float  # Unix seconds


@dataclass
class SharedMarker:
    nonce: str
    written_at: float
    peers: list[PeerMarker] = field(default_factory=list)
    markers_seen: int = 0


@dataclass
class MountResult:
    path: str
    state: MountState
    fs_type: str = ""
    source: str = ""
    read_only: bool = False
    network_filesystem: bool = False
    options: str = ""
    capacity_bytes: int = 0
    free_bytes: int = 0
    write_check: WriteCheck = "not_expected"
    write_latency_seconds: float = 0.0
    message: str = ""
    marker: SharedMarker | None = None
    duration_seconds: float = 0.0


@dataclass
class DnsResult:
    addresses: list[str] = field(default_factory=list)
    family: str = ""  # "ipv4" or "ipv6"
    reason: FailureReason | None = None
    message: str = ""
    duration_seconds: float = 0.0


@dataclass
class Certificate:
    subject: str = ""
    issuer: str = ""
    sha256_fingerprint: str = ""
    not_before: float | None = None
    not_after: float | None = None
    dns_names: list[str] = field(default_factory=list)
    verified: bool = False
    tls_version: str = ""
    # The verified chain ends at a CA from egress.ca_file (a trusted inspecting proxy).
    trusted_by_extra_ca: bool = False


@dataclass
class EgressResult:
    target: str
    url: str
    up: bool = False
    reason: FailureReason | None = None
    failed_phase: Phase | None = None
    message: str = ""
    phases: dict[Phase, float] = field(default_factory=dict)  # seconds per phase reached
    total_seconds: float = 0.0
    dns: DnsResult | None = None
    connected_address: str = ""
    proxy_used: bool = False
    proxy: str = ""  # host:port, never credentials
    proxy_connect_status: int = 0
    certificate: Certificate | None = None
    http_status: int = 0
    time_to_first_byte_seconds: float = 0.0
    started_at: float = 0.0  # Unix seconds
