"""Concern `node`: the node's facts (cores, memory, GPU counts by source, versions).

/metrics: CPU cores, memory, GPUs by source (pci, kernel, driver, allocatable), node info.
Page: the Capacity table with cluster totals; its GPU counts are red where the gpu_nodes
verdict flags the node, with that verdict's note (the page never compares counts itself).
"""

from __future__ import annotations

from collections.abc import Iterator

from collector.concerns.base import Concern, Page, Sample, Section, gauge
from collector.concerns.html import DASH, GIB, esc, node_label, stale_class
from collector.rules.gpu_nodes import REQUIREMENT as GPU_NODES
from collector.rules.model import Verdict
from collector.state import NodeEntry
from preflight.v1 import report_pb2 as pb

NODE_CPU = gauge("preflight_node_cpu_cores", "Logical CPU cores.", ("node",), True)
NODE_MEMORY = gauge("preflight_node_memory_bytes", "Total memory.", ("node",), True)
NODE_GPUS = gauge("preflight_node_gpus", "GPUs by source.", ("node", "source"), True)
NODE_INFO = gauge(
    "preflight_node_info",
    "Node facts as labels.",
    ("node", "kernel", "os", "arch", "agent_version"),
    True,
)


def node_samples(
    node: NodeEntry, allocatable_gpus: int | None, expected_plan: str | None
) -> Iterator[Sample]:
    name = node.name
    report = node.report
    if report.HasField("hardware"):
        yield NODE_CPU, (name,), float(report.hardware.logical_cores)
        yield NODE_MEMORY, (name,), float(report.hardware.memory_total_bytes)
    if report.HasField("gpus"):
        gpus = report.gpus
        yield NODE_GPUS, (name, "pci"), float(gpus.pci_count)
        kernel_view = gpus.kernel_module != pb.KERNEL_MODULE_UNSPECIFIED
        if kernel_view:
            yield NODE_GPUS, (name, "kernel"), float(gpus.kernel_driver_count)
        # NVML's count only where it answered: an agent that cannot reach NVML has not
        # seen "0 GPUs". Agents without the kernel view keep the old series.
        if not kernel_view or gpus.driver_status == pb.DRIVER_STATUS_LOADED:
            yield NODE_GPUS, (name, "driver"), float(gpus.driver_count)
    if allocatable_gpus is not None:
        yield NODE_GPUS, (name, "allocatable"), float(allocatable_gpus)
    hw = report.hardware
    yield (
        NODE_INFO,
        (name, hw.kernel_release, hw.os_release, hw.architecture, report.agent_version),
        1.0,
    )


def _gpu_counts(report: pb.NodeReport) -> tuple[int | None, int | None]:
    """(PCI count, driver count); None where the agent sent no GPU section.

    The driver count is the kernel driver's (what the nvidia module drives, read without
    NVML) where the agent reports it, else NVML's (agents without the kernel view).
    """
    if not report.HasField("gpus"):
        return None, None
    g = report.gpus
    pci = g.pci_count if g.pci_scanned else None
    if g.kernel_module != pb.KERNEL_MODULE_UNSPECIFIED:
        return pci, g.kernel_driver_count
    return pci, g.driver_count


def gpu_verdict(verdicts: tuple[Verdict, ...]) -> tuple[set[str], dict[str, str]]:
    """(nodes the gpu_nodes rule flags, its note per node): the page shows the rule's
    judgement and never compares counts itself."""
    for v in verdicts:
        if v.requirement == GPU_NODES:
            flagged = set(v.nodes) if v.status in ("warn", "fail") else set()
            return flagged, dict(v.node_notes)
    return set(), {}


def capacity_table(page: Page, nodes: tuple[NodeEntry, ...]) -> str:
    data = page.data
    kube_ok = data.kube.available
    total_cpu = 0.0
    total_mem = 0
    total_pci = 0
    total_driver = 0
    total_alloc = 0
    rows = []
    gpu_flagged, gpu_notes = gpu_verdict(data.verdicts)

    def num(value: float | int | None, fmt: str = "{}") -> str:
        return DASH if value is None else fmt.format(value)

    for node in nodes:
        r = node.report
        cpu: int | None = None
        mem: int | None = None
        model = ""
        if r.HasField("hardware"):
            cpu = r.hardware.logical_cores
            mem = r.hardware.memory_total_bytes
            model = r.hardware.cpu_model
        pci, driver = _gpu_counts(r)
        note = gpu_notes.get(node.name, "")
        kube = page.kube_nodes.get(node.name)
        alloc = kube.allocatable_gpus if kube is not None else None
        total_cpu += cpu or 0
        total_mem += mem or 0
        total_pci += pci or 0
        total_driver += driver or 0
        total_alloc += alloc or 0
        flagged = node.name in gpu_flagged
        gpu_class = ' class="num bad"' if flagged else ' class="num"'
        note_class = "warn" if flagged else "muted"
        driver_text = num(driver) + (
            f' <small class="{note_class}">{esc(note)}</small>' if note else ""
        )
        rows.append(
            f'<tr{stale_class(node)} data-node="{esc(node.name)}">'
            f'<th class="node">{node_label(node)}</th><td>{esc(model) or "—"}</td>'
            f'<td class="num">{num(cpu)}</td>'
            f'<td class="num">{num(None if mem is None else mem / GIB, "{:.1f}")}</td>'
            f"<td{gpu_class}>{num(pci)}</td><td{gpu_class}>{driver_text}</td>"
            f"<td{gpu_class}>{num(alloc)}</td></tr>"
        )
    for k in page.without_agent:
        # No agent: only Kubernetes' own capacity figures are known for this node.
        total_cpu += k.capacity_cpu
        total_mem += k.capacity_memory_bytes
        total_alloc += k.allocatable_gpus
        rows.append(
            f'<tr data-node="{esc(k.name)}"><th class="node">{esc(k.name)}'
            '<span class="tag missing">no agent</span></th>'
            '<td class="muted">Kubernetes capacity</td>'
            f'<td class="num">{k.capacity_cpu:g}</td>'
            f'<td class="num">{k.capacity_memory_bytes / GIB:.1f}</td>'
            f'<td class="num muted">—</td><td class="num muted">—</td>'
            f'<td class="num">{k.allocatable_gpus}</td></tr>'
        )
    count = len(nodes) + len(page.without_agent)
    alloc_total = str(total_alloc) if kube_ok else DASH
    rows.append(
        f'<tr id="capacity-totals"><th>cluster total ({count} nodes)</th><td></td>'
        f'<td class="num">{total_cpu:g}</td><td class="num">{total_mem / GIB:.1f}</td>'
        f'<td class="num">{total_pci}</td><td class="num">{total_driver}</td>'
        f'<td class="num">{alloc_total}</td></tr>'
    )
    alloc_note = (
        "allocatable from the Kubernetes API"
        if kube_ok
        else "allocatable needs the Kubernetes API (—)"
    )
    return (
        f'<h2>Capacity</h2><p class="meta">CPU cores are logical cores; GPUs counted on the '
        f"PCI bus, by the kernel driver, and {alloc_note}; red counts are those the gpu_nodes "
        "requirement flags.</p>"
        '<table id="capacity"><thead><tr><th>node</th><th>CPU model</th>'
        '<th class="num">CPU cores</th><th class="num">memory GiB</th>'
        '<th class="num">GPUs pci</th><th class="num">GPUs driver</th>'
        '<th class="num">GPUs allocatable</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


CAPACITY = Section("capacity", capacity_table, nav="capacity")

CONCERN = Concern(
    name="node",
    families=(NODE_CPU, NODE_MEMORY, NODE_GPUS, NODE_INFO),
    node_samples=node_samples,
    sections=(CAPACITY,),
)
