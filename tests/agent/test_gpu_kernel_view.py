"""The kernel driver's view of GPUs on fixture host trees, and the NVML states beside it.

The trees (tests/fixtures/hostfs/gpu-*, formats cited in its README.md) are read
through HostFS exactly as under --host-root; NVML is the real pynvml binding (which
finds no libnvidia-ml.so.1 on this machine) or tests/agent/test_gpu.py's injected fake.
"""

from __future__ import annotations

import json
from pathlib import Path

import pynvml
import pytest

from agent.hostfs import HostFS
from agent.probes.gpu import collect_gpus
from agent.probes.nvidia_kernel import (
    MAX_PROC_GPUS,
    bound_driver,
    parse_information,
    parse_nvrm_version,
    read_kernel_gpus,
    read_module,
)
from agent.probes.results import GpuFacts
from agent.report import to_json
from agent.snapshot import Snapshot, build_report
from agent.text import to_text
from preflight.v1 import report_pb2 as pb
from tests.support.nvml import FakeNvml

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hostfs"
GPUS = (
    "0000:07:00.0",
    "0000:0f:00.0",
    "0000:47:00.0",
    "0000:4e:00.0",
    "0000:87:00.0",
    "0000:90:00.0",
    "0000:b7:00.0",
    "0000:bd:00.0",
)


def host(tree: str) -> HostFS:
    return HostFS(FIXTURES / tree)


# ------------------------------------------------------------------ parsing


def test_parse_information_of_a_real_dump() -> None:
    # As nv_procfs_read_gpu_info prints it (tab-separated, "GPU Excluded:\t").
    text = (
        "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 10\n"
        "GPU UUID: \t GPU-9221d5d1-b60b-a624-bf14-0a1819cfda3b\nVideo BIOS: \t 96.00.99.00.01\n"
        "Bus Type: \t PCIe\nDMA Size: \t 52 bits\nDMA Mask: \t 0xfffffffffffff\n"
        "Bus Location: \t 0000:62:00.0\nDevice Minor: \t 5\nGPU Firmware: \t 535.129.03\n"
        "GPU Excluded:\t No\n"
    )
    gpu = parse_information(text, "0000:62:00.0")
    assert gpu.model == "NVIDIA H100 80GB HBM3"
    assert gpu.uuid == "GPU-9221d5d1-b60b-a624-bf14-0a1819cfda3b"
    assert gpu.bus_location == "0000:62:00.0"
    assert gpu.excluded is False
    assert parse_information(text.replace("Excluded:\t No", "Excluded:\t Yes"), "x").excluded


def test_parse_information_of_garbage_keeps_the_directory_name() -> None:
    gpu = parse_information("\x00\xff no colon here\n: empty key\nModel", "0000:01:00.0")
    assert gpu.bus_location == "0000:01:00.0"
    assert gpu.model == "" and gpu.uuid == "" and gpu.excluded is False


@pytest.mark.parametrize(
    ("text", "version"),
    [
        (
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.129.03  "
            "Thu Oct 19 18:56:32 UTC 2023\nGCC version:  gcc version 12.3.0\n",
            "535.129.03",
        ),
        (
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.14  Release Build  "
            "(dvs-builder@U16-I3-B03-4-3)  Thu Feb 22 01:44:30 UTC 2024\n",
            "550.54.14",
        ),
        ("NVRM version: NVIDIA UNIX x86 Kernel Module  169.12  Thu Feb 14 2008\n", "169.12"),
        ("GCC version:  gcc version 12.3.0\n", ""),  # no NVRM line
        ("NVRM version: something else entirely\n", ""),
    ],
)
def test_parse_nvrm_version(text: str, version: str) -> None:
    assert parse_nvrm_version(text) == version


def test_bound_driver_from_link_then_uevent_then_none() -> None:
    base = "sys/bus/pci/devices"
    healthy = host("gpu-8-healthy")
    assert healthy.readlink(f"{base}/0000:07:00.0/driver").endswith("/drivers/nvidia")
    assert bound_driver(healthy, f"{base}/0000:07:00.0") == "nvidia"
    assert bound_driver(healthy, f"{base}/0000:0c:00.0") == "mlx5_core"
    # vfio tree: the link is gone, uevent's DRIVER= still says it.
    vfio = host("gpu-vfio-passthrough")
    assert not vfio.path(f"{base}/0000:bd:00.0/driver").is_symlink()
    assert bound_driver(vfio, f"{base}/0000:bd:00.0") == "vfio-pci"
    assert bound_driver(host("gpu-fallen-off-bus"), f"{base}/0000:90:00.0") == ""
    assert bound_driver(healthy, f"{base}/0000:ff:00.0") == ""  # no such device


def test_module_state_per_tree() -> None:
    assert read_module(host("gpu-8-healthy")) == ("loaded", "535.129.03")
    assert read_module(host("gpu-module-not-loaded")) == ("not_loaded", "")
    assert read_module(host("cpu-only")) == ("unknown", "")  # neither /sys/module nor procfs


def test_module_loaded_seen_through_sysfs_when_procfs_is_hidden(tmp_path: Path) -> None:
    (tmp_path / "sys/module/nvidia").mkdir(parents=True)
    (tmp_path / "sys/module/nvidia/version").write_text("550.90.07\n")
    assert read_module(HostFS(tmp_path)) == ("loaded", "550.90.07")


def test_hostile_procfs_is_bounded(tmp_path: Path) -> None:
    gpus = tmp_path / "proc/driver/nvidia/gpus"
    for i in range(MAX_PROC_GPUS + 20):
        entry = gpus / f"0000:{i:02x}:00.0"
        entry.mkdir(parents=True)
        (entry / "information").write_text("Model: " + "A" * 200_000 + "\n")
    (gpus / "not-a-dir").write_text("x")
    found = read_kernel_gpus(HostFS(tmp_path))
    assert len(found) == MAX_PROC_GPUS
    # Each file read is capped (64 KiB), so a huge model line is cut, not loaded whole.
    assert 0 < len(found[0].model) < 70_000


# ------------------------------------------------------------------ trees


def test_healthy_eight_gpus() -> None:
    facts = collect_gpus(host("gpu-8-healthy"), nvml=FakeNvml(8))
    assert [d.address for d in facts.pci_devices] == list(GPUS)
    assert {d.kernel_driver for d in facts.pci_devices} == {"nvidia"}
    assert facts.kernel_module == "loaded" and facts.kernel_module_version == "535.129.03"
    assert [g.bus_location for g in facts.kernel_gpus] == list(GPUS)
    assert {g.model for g in facts.kernel_gpus} == {"NVIDIA A100-SXM4-80GB"}
    assert len({g.uuid for g in facts.kernel_gpus}) == 8
    assert facts.kernel_driver_count() == 8 and facts.passthrough_count() == 0
    assert facts.driver_status == "loaded" and len(facts.devices) == 8


def test_gpu_fallen_off_the_bus_pci_8_driver_7() -> None:
    facts = collect_gpus(host("gpu-fallen-off-bus"), nvml=FakeNvml(7))
    assert len(facts.pci_devices) == 8
    lost = [d for d in facts.pci_devices if d.kernel_driver != "nvidia"]
    assert [(d.address, d.kernel_driver) for d in lost] == [("0000:90:00.0", "")]
    assert "0000:90:00.0" not in {g.bus_location for g in facts.kernel_gpus}
    assert facts.kernel_driver_count() == 7


def test_gpu_left_on_vfio_pci_is_passthrough() -> None:
    facts = collect_gpus(host("gpu-vfio-passthrough"), nvml=FakeNvml(7))
    drivers = {d.address: d.kernel_driver for d in facts.pci_devices}
    assert drivers["0000:bd:00.0"] == "vfio-pci"
    assert facts.kernel_driver_count() == 7
    assert facts.passthrough_count() == 1


def test_module_not_loaded_with_the_real_nvml_binding() -> None:
    facts = collect_gpus(host("gpu-module-not-loaded"))
    assert len(facts.pci_devices) == 8
    assert {d.kernel_driver for d in facts.pci_devices} == {""}
    assert facts.kernel_module == "not_loaded" and facts.kernel_gpus == []
    assert facts.kernel_driver_count() == 0
    # No module and no library: "not installed" is then the truth.
    assert facts.driver_status == "not_installed"


def test_nvml_unreachable_with_the_module_loaded_real_binding() -> None:
    # The real pynvml here finds no libnvidia-ml.so.1, like an agent pod without the
    # NVIDIA runtime on a healthy GPU node.
    facts = collect_gpus(host("gpu-nvml-unreachable"))
    assert facts.kernel_module == "loaded" and facts.kernel_driver_count() == 8
    assert facts.driver_status == "unreachable"
    assert "NVML not reachable from the agent" in facts.driver_message
    assert facts.devices == []


@pytest.mark.parametrize(
    "code",
    [
        pynvml.NVML_ERROR_LIBRARY_NOT_FOUND,
        pynvml.NVML_ERROR_DRIVER_NOT_LOADED,
        pynvml.NVML_ERROR_NO_PERMISSION,
    ],
)
def test_nvml_unreachable_through_the_fake(code: int) -> None:
    nvml = FakeNvml(8, init_error=pynvml.NVMLError(code))
    assert collect_gpus(host("gpu-8-healthy"), nvml=nvml).driver_status == "unreachable"
    # The same answer with no module on the host is not "unreachable".
    assert collect_gpus(host("gpu-module-not-loaded"), nvml=nvml).driver_status != "unreachable"


def test_missing_binding_with_the_module_loaded_is_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import agent.probes.gpu as gpu

    monkeypatch.setattr(gpu, "load_nvml", lambda: None)
    facts = gpu.collect_gpus(host("gpu-8-healthy"))
    assert facts.driver_status == "unreachable"
    assert "nvidia-ml-py" in facts.driver_message


def test_nvml_version_mismatch() -> None:
    nvml = FakeNvml(8, init_error=pynvml.NVMLError(pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH))
    facts = collect_gpus(host("gpu-8-healthy"), nvml=nvml)
    assert facts.driver_status == "version_mismatch"
    assert "mismatch" in facts.driver_message.lower()
    assert facts.kernel_driver_count() == 8  # the kernel's count does not depend on NVML


def test_nvml_detail_mig_mode() -> None:
    nvml = FakeNvml(8, mig=(2, 5))
    facts = collect_gpus(host("gpu-8-healthy"), nvml=nvml)
    assert [d.mig_enabled for d in facts.devices] == [i in (2, 5) for i in range(8)]
    assert facts.cuda_version == "12.2"


# ------------------------------------------------------------------ to the wire


def wire(facts: GpuFacts, node: str = "n") -> pb.NodeReport:
    return build_report(
        Snapshot(results={"gpus": facts}),
        node_name=node,
        agent_version="test",
        instance_id="i",
        sequence=1,
        probe_interval=15.0,
        heartbeat_interval=30.0,
    )


def test_report_carries_the_kernel_view() -> None:
    facts = collect_gpus(host("gpu-vfio-passthrough"), nvml=FakeNvml(7))
    report = wire(facts, "gpu-node-3")
    g = report.gpus
    assert g.kernel_module == pb.KERNEL_MODULE_LOADED
    assert g.kernel_module_version == "535.129.03"
    assert (g.pci_count, g.kernel_driver_count, g.passthrough_count) == (8, 7, 1)
    assert {d.address: d.kernel_driver for d in g.pci_devices}["0000:bd:00.0"] == "vfio-pci"
    assert len(g.kernel_gpus) == 7 and g.kernel_gpus[0].model == "NVIDIA A100-SXM4-80GB"
    data = json.loads(to_json(report))
    assert data["gpus"]["kernelModule"] == "KERNEL_MODULE_LOADED"
    line = next(x for x in to_text(report).splitlines() if x.startswith("gpus:"))
    assert "pci=8 kernel=7 (nvidia module loaded 535.129.03, 1 passthrough) nvml=7" in line


def test_report_of_an_unreachable_nvml() -> None:
    facts = collect_gpus(host("gpu-nvml-unreachable"))
    report = wire(facts)
    assert report.gpus.driver_status == pb.DRIVER_STATUS_UNREACHABLE
    assert report.gpus.kernel_driver_count == 8 and report.gpus.driver_count == 0


def test_unknown_module_state_stays_unspecified_on_the_wire() -> None:
    facts = collect_gpus(host("cpu-only"), nvml=FakeNvml(0))
    report = wire(facts)
    assert report.gpus.kernel_module == pb.KERNEL_MODULE_UNSPECIFIED
