"""GPU facts: PCI scan of fixture sysfs trees, NVML faked (no GPU exists where tests run)."""

from __future__ import annotations

from pathlib import Path

import pynvml
import pytest

from agent.hostfs import HostFS
from agent.probes.gpu import collect_gpus, is_nvidia_gpu
from tests.support.nvml import FakeNvml

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hostfs"


def test_cpu_only_node_with_real_nvml_binding() -> None:
    # The real pynvml on a machine without libnvidia-ml: "no driver" is a fact.
    facts = collect_gpus(HostFS(FIXTURES / "cpu-only"))
    assert facts.pci_scanned is True
    assert facts.pci_devices == []  # the ASPEED BMC VGA is not NVIDIA
    assert facts.driver_status == "not_installed"
    assert "not found" in facts.driver_message
    assert facts.devices == []


def test_eight_gpu_node_with_driver() -> None:
    nvml = FakeNvml(8)
    facts = collect_gpus(HostFS(FIXTURES / "dgx-8gpu"), nvml=nvml)
    assert len(facts.pci_devices) == 8  # NVSwitches (class 0x0680) are not GPUs
    assert {d.device_id for d in facts.pci_devices} == {"0x20b2"}
    assert facts.pci_devices[0].address == "0000:07:00.0"
    assert facts.driver_status == "loaded"
    assert facts.driver_version == "535.129.03"
    assert facts.cuda_version == "12.2"
    assert len(facts.devices) == 8
    assert facts.devices[3].name == "NVIDIA A100-SXM4-80GB"
    assert facts.devices[3].uuid.startswith("GPU-")
    assert facts.devices[3].memory_total_bytes == 85_899_345_920
    assert facts.devices[3].pci_bus_id == "00000000:03:00.0"
    assert facts.driver_message == ""
    assert nvml.shutdowns == nvml.initialised == 1


def test_eight_on_pci_but_driver_sees_seven() -> None:
    facts = collect_gpus(HostFS(FIXTURES / "dgx-8gpu"), nvml=FakeNvml(7))
    assert len(facts.pci_devices) == 8
    assert len(facts.devices) == 7
    assert facts.driver_status == "loaded"


def test_lost_gpu_is_skipped_and_named() -> None:
    facts = collect_gpus(HostFS(FIXTURES / "dgx-8gpu"), nvml=FakeNvml(8, lost=(5,)))
    assert [d.index for d in facts.devices] == [0, 1, 2, 3, 4, 6, 7]
    assert "GPU 5" in facts.driver_message and "Lost" in facts.driver_message


def test_no_pci_bus_at_all() -> None:
    facts = collect_gpus(HostFS(FIXTURES / "no-pci"), nvml=FakeNvml(0))
    assert facts.pci_scanned is False
    assert facts.pci_devices == []
    assert facts.driver_status == "loaded"
    assert facts.devices == []


def test_driver_present_but_not_loaded_is_an_error() -> None:
    nvml = FakeNvml(8, init_error=pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED))
    facts = collect_gpus(HostFS(FIXTURES / "dgx-8gpu"), nvml=nvml)
    assert facts.driver_status == "error"
    assert "nvmlInit failed" in facts.driver_message
    assert len(facts.pci_devices) == 8  # the PCI count still tells how many are there


def test_library_not_found_is_not_installed() -> None:
    nvml = FakeNvml(0, init_error=pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    facts = collect_gpus(HostFS(FIXTURES / "no-pci"), nvml=nvml)
    assert facts.driver_status == "not_installed"


def test_missing_binding_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.probes.gpu as gpu

    monkeypatch.setattr(gpu, "load_nvml", lambda: None)
    facts = gpu.collect_gpus(HostFS(FIXTURES / "dgx-8gpu"))
    assert facts.driver_status == "not_installed"
    assert "nvidia-ml-py" in facts.driver_message


@pytest.mark.parametrize(
    ("vendor", "cls", "expected"),
    [
        ("0x10de\n", "0x030000\n", True),
        ("0x10DE", "0x030200", True),
        ("0x10de", "0x068000", False),  # NVSwitch
        ("0x10de", "0x040300", False),  # HDMI audio function
        ("0x1002", "0x030000", False),  # AMD
    ],
)
def test_gpu_class_filter(vendor: str, cls: str, expected: bool) -> None:
    assert is_nvidia_gpu(vendor, cls) is expected


def test_live_machine_scan_does_not_fail() -> None:
    facts = collect_gpus(HostFS(Path("/")))
    assert facts.pci_scanned == Path("/sys/bus/pci/devices").is_dir()


def test_mig_instances_are_listed_per_gpu() -> None:
    nvml = FakeNvml(8, mig_instances={0: ("3g.40gb", "2g.20gb", "1g.10gb"), 5: ("7g.80gb",)})
    facts = collect_gpus(HostFS(FIXTURES / "dgx-8gpu"), nvml=nvml)
    assert facts.driver_message == ""  # empty MIG slots (NOT_FOUND) are not problems
    by_index = {d.index: d for d in facts.devices}
    assert by_index[0].mig_enabled and by_index[5].mig_enabled and not by_index[1].mig_enabled
    assert [m.name for m in by_index[0].mig_devices] == [
        "NVIDIA A100-SXM4-80GB MIG 3g.40gb",
        "NVIDIA A100-SXM4-80GB MIG 2g.20gb",
        "NVIDIA A100-SXM4-80GB MIG 1g.10gb",
    ]
    assert [m.memory_total_bytes for m in by_index[0].mig_devices] == [
        40 * 1024**3,
        20 * 1024**3,
        10 * 1024**3,
    ]
    assert by_index[5].mig_devices[0].uuid == "MIG-0005-0000"
    assert by_index[1].mig_devices == []


def test_mig_enabled_without_instances_lists_none() -> None:
    facts = collect_gpus(HostFS(FIXTURES / "dgx-8gpu"), nvml=FakeNvml(8, mig=(2,)))
    assert facts.devices[2].mig_enabled and facts.devices[2].mig_devices == []


def test_version_mismatch_is_its_own_state() -> None:
    mismatch = pynvml.NVMLError(pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH)
    facts = collect_gpus(HostFS(FIXTURES / "gpu-8-healthy"), nvml=FakeNvml(8, init_error=mismatch))
    assert facts.driver_status == "version_mismatch"
    assert "differ" in facts.driver_message
    assert facts.devices == []
    assert facts.kernel_driver_count() == 8  # the kernel's view still counts the GPUs
