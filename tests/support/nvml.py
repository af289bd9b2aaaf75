"""A stand-in for the pynvml module (no GPU exists where tests run): a driver that sees A100s."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pynvml


class FakeNvml:
    """Stands in for the pynvml module: a driver that sees `count` GPUs (A100-80GB unless told).

    `mig` lists the GPUs in MIG mode; `mig_instances` the MIG profiles created on each
    (e.g. {0: ("1g.10gb", "3g.40gb")}). MIG device handles are (gpu, slot) pairs, as real
    NVML hands out distinct handles for the GPU and each of its instances.
    """

    def __init__(
        self,
        count: int,
        lost: tuple[int, ...] = (),
        init_error: Any = None,
        mig: tuple[int, ...] = (),
        *,
        name: str = "NVIDIA A100-SXM4-80GB",
        memory: int = 85_899_345_920,
        driver_version: str = "535.129.03",
        cuda: int = 12020,
        mig_instances: dict[int, tuple[str, ...]] | None = None,
    ) -> None:
        self.count = count
        self.mig_instances = mig_instances or {}
        self.mig = tuple(sorted(set(mig) | set(self.mig_instances)))
        self.lost = lost
        self.init_error = init_error
        self.name = name
        self.memory = memory
        self.driver_version = driver_version
        self.cuda = cuda
        self.initialised = 0
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.cuda

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if index in self.lost:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return index

    def nvmlDeviceGetName(self, handle: Any) -> bytes:
        if isinstance(handle, tuple):
            gpu, slot = handle
            return f"{self.name} MIG {self.mig_instances[gpu][slot]}".encode()
        return self.name.encode()  # older bindings return bytes

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        if isinstance(handle, tuple):
            return f"MIG-{handle[0]:04d}-{handle[1]:04d}"
        return f"GPU-00000000-0000-0000-0000-00000000000{handle}"

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> SimpleNamespace:
        if isinstance(handle, tuple):
            profile = self.mig_instances[handle[0]][handle[1]]
            gigabytes = int(profile.split(".")[1].removesuffix("gb"))
            return SimpleNamespace(total=gigabytes * 1024**3, free=0, used=0)
        return SimpleNamespace(total=self.memory, free=0, used=0)

    def nvmlDeviceGetPciInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(busId=f"00000000:{handle:02x}:00.0")

    def nvmlDeviceGetMigMode(self, handle: int) -> list[int]:
        # (current, pending); GPUs without MIG support raise NOT_SUPPORTED in real NVML.
        if handle in self.mig:
            return [pynvml.NVML_DEVICE_MIG_ENABLE, pynvml.NVML_DEVICE_MIG_ENABLE]
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: int) -> int:
        return 7 if handle in self.mig else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: int, slot: int) -> tuple[int, int]:
        if slot >= len(self.mig_instances.get(handle, ())):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return (handle, slot)
