"""GPU capacity facts travel in the report: model, memory, driver/CUDA, MIG instances."""

from __future__ import annotations

import pynvml

from preflight.v1 import report_pb2 as pb
from tests.support.gpu_reports import gpu_report
from tests.support.nvml import FakeNvml


def test_mig_instances_reach_the_report() -> None:
    nvml = FakeNvml(8, driver_version="550.54.14", cuda=12040, mig_instances={3: ("7g.80gb",)})
    gpus = gpu_report("n", "gpu-8-healthy", nvml).gpus
    assert gpus.driver_version == "550.54.14" and gpus.cuda_version == "12.4"
    device = gpus.devices[3]
    assert device.name == "NVIDIA A100-SXM4-80GB" and device.memory_total_bytes == 85_899_345_920
    assert device.mig_enabled
    assert [(m.index, m.name, m.memory_total_bytes) for m in device.mig_devices] == [
        (0, "NVIDIA A100-SXM4-80GB MIG 7g.80gb", 80 * 1024**3)
    ]
    assert all(not d.mig_devices for i, d in enumerate(gpus.devices) if i != 3)
    # Round trip through the wire format keeps them.
    again = pb.NodeReport.FromString(gpu_report("n", "gpu-8-healthy", nvml).SerializeToString())
    assert again.gpus.devices[3].mig_devices[0].uuid == "MIG-0003-0000"


def test_version_mismatch_report_keeps_the_kernel_model_and_driver() -> None:
    mismatch = pynvml.NVMLError(pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH)
    gpus = gpu_report("n", "gpu-8-healthy", FakeNvml(8, init_error=mismatch)).gpus
    assert gpus.driver_status == pb.DRIVER_STATUS_VERSION_MISMATCH
    assert not gpus.devices
    assert gpus.kernel_module_version == "535.129.03"
    assert {g.model for g in gpus.kernel_gpus} == {"NVIDIA A100-SXM4-80GB"}
