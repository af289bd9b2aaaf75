"""Concern `capacity`: what each node offers workloads, per GPU and per filesystem role.

/metrics: one info series per GPU (model, driver, CUDA, MIG mode), its memory and MIG
instances; capacity and free space of the filesystems holding root, the kubelet and the
container runtime. Page: the GPU capacity section (per node, and totals per model), from
collector.capacity. Labels stay bounded: GPU indexes, the agent's fixed list of
filesystem roles and paths, a capped model name.
"""

from __future__ import annotations

from collections.abc import Iterator

from collector.capacity import gpu_capacity
from collector.concerns.base import Concern, Page, Sample, Section, gauge
from collector.concerns.html import DASH, GIB, esc
from collector.concerns.node import gpu_verdict
from collector.state import NodeEntry

# GPU model names are short ("NVIDIA A100-SXM4-80GB"); a cap keeps a hostile one bounded.
MODEL_LABEL_MAX = 64

GPU_INFO = gauge(
    "preflight_gpu_info",
    "One series per GPU NVML lists: model, driver and CUDA version, MIG mode as labels.",
    ("node", "index", "model", "driver_version", "cuda_version", "mig_mode"),
    True,
)
GPU_MEMORY = gauge(
    "preflight_gpu_memory_bytes", "GPU memory (NVML's total).", ("node", "index"), True
)
GPU_MIG_INSTANCES = gauge(
    "preflight_gpu_mig_instances",
    "MIG instances on the GPU (0 with MIG mode disabled).",
    ("node", "index"),
    True,
)
FS_CAPACITY = gauge(
    "preflight_node_filesystem_capacity_bytes",
    "Size of the filesystem holding a well-known directory (root, kubelet, runtime).",
    ("node", "role", "path"),
    True,
)
FS_FREE = gauge(
    "preflight_node_filesystem_free_bytes",
    "Space non-root writers (kubelet, container images) can still use there.",
    ("node", "role", "path"),
    True,
)


def node_samples(
    node: NodeEntry, allocatable_gpus: int | None, expected_plan: str | None
) -> Iterator[Sample]:
    name = node.name
    report = node.report
    gpus = report.gpus
    for d in gpus.devices:
        index = str(d.index)
        mig = "enabled" if d.mig_enabled else "disabled"
        model = d.name[:MODEL_LABEL_MAX]
        yield GPU_INFO, (name, index, model, gpus.driver_version, gpus.cuda_version, mig), 1.0
        yield GPU_MEMORY, (name, index), float(d.memory_total_bytes)
        yield GPU_MIG_INSTANCES, (name, index), float(len(d.mig_devices))
    seen: set[tuple[str, str]] = set()
    for fs in report.hardware.filesystems:
        key = (fs.role[:32], fs.path[:64])
        if key in seen:  # a duplicated entry must not make a duplicated series
            continue
        seen.add(key)
        yield FS_CAPACITY, (name, *key), float(fs.capacity_bytes)
        yield FS_FREE, (name, *key), float(fs.free_bytes)


def _gib(value: int | None) -> str:
    return DASH if value is None else f"{value / GIB:,.0f}"


def gpu_capacity_section(page: Page, nodes: tuple[NodeEntry, ...]) -> str:
    """GPU capacity per node and totals per model (collector.capacity computes, this draws)."""
    capacity = gpu_capacity(nodes)
    # Red only where the gpu_nodes verdict flags the node: the page shows the judgement.
    flagged, _notes = gpu_verdict(page.data.verdicts)
    rows = []
    for n in capacity.nodes:
        if not n.gpus and n.images_free is None:
            continue
        models = "<br>".join(f"{count} × {esc(model)}" for model, count in n.models) or DASH
        memory = sorted(set(n.memory_bytes))
        memory_text = " / ".join(f"{m / GIB:.0f}" for m in memory) if memory else DASH
        mig = DASH
        if n.mig_enabled:
            mig = f"{n.mig_instances} <small>on {n.mig_enabled} GPUs</small>"
        driver = esc(n.driver) or DASH
        source = f" <small>({esc(n.source)})</small>" if n.source == "kernel" else ""
        if n.driver_problems and n.node in flagged:
            reasons = " ".join(esc(r) for r, _ in n.driver_problems)
            title = esc("; ".join(t for _, t in n.driver_problems))
            driver_cell = (
                f'<td class="cell-bad" data-reason="{reasons}" title="{title}">{driver}{source}'
                f"<br><small>{esc(', '.join(r for r, _ in n.driver_problems))}</small></td>"
            )
        else:
            driver_cell = f"<td>{driver}{source}</td>"
        images = DASH
        if n.images_free is not None:
            images = (
                f"{_gib(n.images_free)} <small>of {_gib(n.images_capacity)} "
                f"({esc(n.images_role)})</small>"
            )
        stale = "" if n.up else ' class="stale"'
        rows.append(
            f'<tr{stale} data-node="{esc(n.node)}" '
            f'data-model="{esc(n.model)}"><th class="node">{esc(n.node)}</th>'
            f'<td>{models}</td><td class="num">{memory_text}</td><td class="num">{mig}</td>'
            f"{driver_cell}<td>{esc(n.cuda) or DASH}</td>"
            f'<td class="num">{images}</td><td class="num">{_gib(n.kubelet_free)}</td></tr>'
        )
    if not rows:
        return '<h2>GPU capacity</h2><p id="gpu-capacity" class="muted">No capacity reported.</p>'
    model_rows = []
    for t in capacity.models:
        drivers = ", ".join(f"{esc(v)} <small>× {c}</small>" for v, c in sorted(t.drivers.items()))
        spread = len(t.drivers) > 1 and any(node in flagged for node in t.nodes)
        differs = ' class="cell-bad" data-reason="driver_differs"' if spread else ""
        model_rows.append(
            f'<tr data-model="{esc(t.model)}"><th>{esc(t.model)}</th>'
            f'<td class="num">{len(t.nodes)}</td><td class="num">{t.gpus}</td>'
            f'<td class="num">{_gib(t.memory_bytes) if t.memory_bytes else DASH}</td>'
            f'<td class="num">{t.mig_instances or DASH}</td><td{differs}>{drivers or DASH}</td>'
            "</tr>"
        )
    return (
        '<h2>GPU capacity</h2><p class="meta">Per node from NVML (or the kernel driver\'s '
        "records where NVML is not reachable); free space in GiB where container images land "
        "and where the kubelet keeps volumes. A red driver cell (a node gpu_nodes flags) names "
        "its reason: "
        "<b>driver_differs</b> (nodes of one model on different drivers) or "
        "<b>version_mismatch</b> (NVML: driver/library version mismatch).</p>"
        '<table id="gpu-capacity"><thead><tr><th>node</th><th>GPUs</th>'
        '<th class="num">GiB per GPU</th><th class="num">MIG instances</th><th>driver</th>'
        '<th>CUDA</th><th class="num">free for images GiB</th>'
        '<th class="num">free for kubelet GiB</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        '<h3>Totals by GPU model</h3><table id="gpu-models"><thead><tr><th>model</th>'
        '<th class="num">nodes</th><th class="num">GPUs</th><th class="num">memory GiB</th>'
        '<th class="num">MIG instances</th><th>drivers <small>(× nodes)</small></th>'
        f"</tr></thead><tbody>{''.join(model_rows)}</tbody></table>"
    )


GPU_CAPACITY = Section("gpu-capacity", gpu_capacity_section)

CONCERN = Concern(
    name="capacity",
    families=(GPU_INFO, GPU_MEMORY, GPU_MIG_INSTANCES, FS_CAPACITY, FS_FREE),
    node_samples=node_samples,
    sections=(GPU_CAPACITY,),
)
