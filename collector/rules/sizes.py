"""What a node's agent says the machine has: cores, memory, root disk, GPUs.

system_nodes, control_plane_hardware and gpu_operator size nodes from the agent's report
where one reports (what the machine really has) and from Kubernetes otherwise. They
read the same few numbers, so one per-report cache (collector.rules.memo) holds them for
all three: a judging then decodes only the reports that arrived since the last, and
while none did they get the dict of the last judging.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.rules.memo import PerReport
from collector.rules.model import Evidence
from preflight.v1 import report_pb2 as pb


@dataclass(frozen=True, slots=True)
class Size:
    """One report's sizes; `hardware` False: the agent sent no hardware section."""

    hardware: bool
    logical_cores: int
    memory_bytes: int
    root_disk_bytes: int  # 0: no root filesystem reported
    pci_gpus: int
    driver_gpus: int  # NVML's count


def _size_of(report: pb.NodeReport) -> Size:
    hw = report.hardware
    return Size(
        hardware=report.HasField("hardware"),
        logical_cores=hw.logical_cores,
        memory_bytes=hw.memory_total_bytes,
        root_disk_bytes=next((f.capacity_bytes for f in hw.filesystems if f.role == "root"), 0),
        pci_gpus=report.gpus.pci_count,
        driver_gpus=report.gpus.driver_count,
    )


_SIZES = PerReport(_size_of)
# The last dict handed out, with the names and values it was built of: three rules ask
# every judging, and while no report came it is the same dict (rules compare it by
# identity first, collector.rules.memo.LastVerdict).
_last: tuple[list[str], list[Size], dict[str, Size]] = ([], [], {})


def live_sizes(view: Evidence) -> dict[str, Size]:
    """Node name → its agent's sizes, for the nodes whose agent reports in time."""
    global _last
    names, sizes = _SIZES.named(view.live_nodes)
    last = _last
    if sizes is last[1] and names == last[0]:
        return last[2]
    by_name = dict(zip(names, sizes, strict=True))
    _last = (names, sizes, by_name)
    return by_name
