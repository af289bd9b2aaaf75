"""A 3-node, 2-model GPU cluster whose reports come from the agent's own code.

Each node's GPU section is what agent.probes.gpu reads from the healthy fixture tree
with the injected fake NVML (tests/test_gpu.py's FakeNvml); filesystems are added as the
hardware probe reports them. What it shows:

- `a100-1`: 8 × A100-SXM4-80GB, NVML driver 550.54.14, MIG on GPU 0 (3 instances);
- `a100-2`: the same model, NVML answers "driver/library version mismatch", so model and
  driver come from the kernel's records (535.129.03): both reasons on one cluster;
- `h100-1`: 8 × H100 80GB HBM3, driver 550.54.14, a fuller image disk.
"""

from __future__ import annotations

import pynvml

from collector.published import Published
from collector.rules import gpu_nodes
from collector.state import NodeEntry
from preflight.v1 import report_pb2 as pb
from tests.support.builders import view
from tests.support.gpu_reports import gpu_report
from tests.support.nvml import FakeNvml

GIB = 1024**3
A100 = "NVIDIA A100-SXM4-80GB"
H100 = "NVIDIA H100 80GB HBM3"


def _disks(message: pb.NodeReport, images_free_gib: int) -> pb.NodeReport:
    hw = message.hardware
    hw.logical_cores = 128
    hw.memory_total_bytes = 1024 * GIB
    hw.filesystems.add(role="root", path="/", capacity_bytes=200 * GIB, free_bytes=120 * GIB)
    hw.filesystems.add(
        role="kubelet", path="/var/lib/kubelet", capacity_bytes=200 * GIB, free_bytes=120 * GIB
    )
    hw.filesystems.add(
        role="container_runtime",
        path="/var/lib/containerd",
        capacity_bytes=3500 * GIB,
        free_bytes=images_free_gib * GIB,
    )
    return message


def capacity_reports() -> list[pb.NodeReport]:
    mismatch = pynvml.NVMLError(pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH)
    return [
        _disks(
            gpu_report(
                "a100-1",
                "gpu-8-healthy",
                FakeNvml(
                    8,
                    driver_version="550.54.14",
                    cuda=12040,
                    mig_instances={0: ("3g.40gb", "2g.20gb", "1g.10gb")},
                ),
            ),
            2900,
        ),
        _disks(gpu_report("a100-2", "gpu-8-healthy", FakeNvml(8, init_error=mismatch)), 3100),
        _disks(
            gpu_report(
                "h100-1",
                "gpu-8-healthy",
                FakeNvml(8, name=H100, driver_version="550.54.14", cuda=12040),
            ),
            410,
        ),
    ]


def capacity_view(entries: tuple[NodeEntry, ...]) -> Published:
    """What the status page renders for `entries`: their state and the gpu_nodes verdict
    (the page colours what that rule flags)."""
    evidence = view(*entries)
    return Published(state=evidence.state, verdicts=(gpu_nodes.evaluate(evidence),), ready=())
