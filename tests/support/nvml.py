"""A stand-in for the pynvml module (no GPU exists where tests run): a driver that sees A100s."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pynvml


class FakeNvml:
    """Stands in for the pynvml module: a driver that sees `count` A100s."""

    def __init__(
        self,
        count: int,
        lost: tuple[int, ...] = (),
        init_error: Any = None,
        mig: tuple[int, ...] = (),
    ) -> None:
        self.count = count
        self.mig = mig
        self.lost = lost
        self.init_error = init_error
        self.initialised = 0
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return "535.129.03"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 12020

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if index in self.lost:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return b"NVIDIA A100-SXM4-80GB"  # older bindings return bytes

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return f"GPU-00000000-0000-0000-0000-00000000000{handle}"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(total=85_899_345_920, free=0, used=0)

    def nvmlDeviceGetPciInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(busId=f"00000000:{handle:02x}:00.0")

    def nvmlDeviceGetMigMode(self, handle: int) -> list[int]:
        # (current, pending); GPUs without MIG support raise NOT_SUPPORTED in real NVML.
        if handle in self.mig:
            return [pynvml.NVML_DEVICE_MIG_ENABLE, pynvml.NVML_DEVICE_MIG_ENABLE]
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
