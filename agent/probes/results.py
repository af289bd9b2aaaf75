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
DriverStatus = Literal["loaded", "not_installed", "error"]


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


@dataclass
class GpuDevice:
    index: int
    uuid: str
    name: str
    memory_total_bytes: int
    pci_bus_id: str = ""


@dataclass
class GpuFacts:
    pci_scanned: bool = False
    pci_devices: list[PciDevice] = field(default_factory=list)
    driver_status: DriverStatus = "not_installed"
    driver_message: str = ""
    driver_version: str = ""
    cuda_version: str = ""
    devices: list[GpuDevice] = field(default_factory=list)


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
