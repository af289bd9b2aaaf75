"""GPU capacity per node and per model, from the agents' reports: what the status page shows.

Per node: GPU model × count, memory per GPU, MIG instances, driver and CUDA version, free
space where container images land (the container runtime's filesystem, else root) and
where the kubelet keeps volumes. Per model: nodes, GPUs, memory, MIG instances, drivers.

Two findings get their own reason, because each breaks workloads on its own:
- ``driver_differs``: nodes with the same GPU model run different driver versions (a
  half-finished rolling upgrade; jobs then behave differently per node);
- ``version_mismatch``: NVML answers "Driver/library version mismatch" (user space
  upgraded, the old kernel module still loaded: the aftermath of an unattended upgrade).

The model and driver come from NVML where it answered, else from the kernel driver's own
records (/proc/driver/nvidia), so an agent without the NVIDIA runtime still fills them.
Pure data in, data out: no I/O, no HTML.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from collector.state import NodeEntry
from preflight.v1 import report_pb2 as pb

REASON_DRIVER_DIFFERS = "driver_differs"
REASON_VERSION_MISMATCH = "version_mismatch"
IMAGE_ROLES = ("container_runtime", "root")


@dataclass(frozen=True)
class NodeGpus:
    node: str
    up: bool
    models: tuple[tuple[str, int], ...]  # (model, GPUs of it)
    memory_bytes: tuple[int, ...]  # per GPU, NVML only
    mig_instances: int
    mig_enabled: int
    driver: str
    cuda: str
    source: str  # "nvml", "kernel" or "" (no GPU detail)
    images_free: int | None
    images_capacity: int | None
    images_role: str
    kubelet_free: int | None
    # (reason, sentence) for the driver cell; empty when it is fine.
    driver_problems: tuple[tuple[str, str], ...] = ()

    @property
    def gpus(self) -> int:
        return sum(n for _, n in self.models)

    @property
    def model(self) -> str:
        return self.models[0][0] if len(self.models) == 1 else ""


@dataclass
class ModelTotal:
    model: str
    nodes: list[str] = field(default_factory=list)
    gpus: int = 0
    memory_bytes: int = 0
    mig_instances: int = 0
    drivers: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Capacity:
    nodes: tuple[NodeGpus, ...]
    models: tuple[ModelTotal, ...]


def _filesystem(
    report: pb.NodeReport, roles: tuple[str, ...]
) -> tuple[int | None, int | None, str]:
    by_role: dict[str, pb.FilesystemUsage] = {}
    for fs in report.hardware.filesystems:
        by_role.setdefault(fs.role, fs)
    for role in roles:
        if role in by_role:
            return by_role[role].free_bytes, by_role[role].capacity_bytes, role
    return None, None, ""


def models_and_driver(gpus: pb.GpuFacts) -> tuple[tuple[tuple[str, int], ...], str, str]:
    """(model × GPUs, most GPUs first; the driver version; "nvml", "kernel" or "").

    NVML's names where it answered, else the kernel driver's records; the same for the
    capacity view and the gpu_nodes rule, which judges a driver spread within one model.
    """
    models: Counter[str] = Counter()
    source = ""
    if gpus.devices:
        source = "nvml"
        for d in gpus.devices:
            models[d.name or "unknown model"] += 1
    elif gpus.kernel_gpus:
        source = "kernel"
        for g in gpus.kernel_gpus:
            if not g.excluded:
                models[g.model or "unknown model"] += 1
    ordered = tuple(sorted(models.items(), key=lambda kv: (-kv[1], kv[0])))
    return ordered, gpus.driver_version or gpus.kernel_module_version, source


def driver_spread(
    nodes: Iterable[tuple[str, tuple[tuple[str, int], ...], str]],
) -> dict[str, str]:
    """Node → why it is off: nodes of one GPU model on different drivers.

    Within one model, nodes off the most common driver are named; on a tie, all are
    (a half-finished rolling upgrade has no "right" side yet). `nodes` are
    (name, models, driver) as models_and_driver gives them.
    """
    # One pass groups nodes by model; only a model with two drivers is looked at again
    # (the judging runs this every second over every GPU node).
    by_model: dict[str, list[tuple[str, str]]] = {}
    for name, models, driver in nodes:
        if driver:
            for model, _count in models:
                by_model.setdefault(model, []).append((name, driver))
    flagged: dict[str, str] = {}
    for model, members in by_model.items():
        counter = Counter(driver for _, driver in members)
        if len(counter) < 2:
            continue
        ranked = counter.most_common()
        majority = ranked[0][0] if ranked[0][1] > ranked[1][1] else None
        spread = ", ".join(f"{version} on {count}" for version, count in sorted(ranked))
        for name, driver in members:
            if driver != majority:
                flagged[name] = f"drivers differ between {model} nodes ({spread} nodes)"
    return flagged


def _node(entry: NodeEntry) -> NodeGpus:
    report = entry.report
    gpus = report.gpus
    memory: list[int] = []
    mig_instances = mig_enabled = 0
    models, driver, source = models_and_driver(gpus)
    if source == "nvml":
        for d in gpus.devices:
            memory.append(d.memory_total_bytes)
            mig_instances += len(d.mig_devices)
            mig_enabled += d.mig_enabled
    problems: list[tuple[str, str]] = []
    if gpus.driver_status == pb.DRIVER_STATUS_VERSION_MISMATCH:
        problems.append(
            (
                REASON_VERSION_MISMATCH,
                "NVML: driver/library version mismatch — the user-space driver was upgraded "
                "while the old kernel module is still loaded (reload it or reboot)",
            )
        )
    images_free, images_capacity, images_role = _filesystem(report, IMAGE_ROLES)
    kubelet_free, _, _ = _filesystem(report, ("kubelet",))
    return NodeGpus(
        node=entry.name,
        up=entry.up,
        models=models,
        memory_bytes=tuple(memory),
        mig_instances=mig_instances,
        mig_enabled=mig_enabled,
        driver=driver,
        cuda=gpus.cuda_version,
        source=source,
        images_free=images_free,
        images_capacity=images_capacity,
        images_role=images_role,
        kubelet_free=kubelet_free,
        driver_problems=tuple(problems),
    )


def gpu_capacity(entries: tuple[NodeEntry, ...]) -> Capacity:
    nodes = [_node(e) for e in entries]
    totals: dict[str, ModelTotal] = {}
    for n in nodes:
        for model, count in n.models:
            total = totals.setdefault(model, ModelTotal(model))
            total.nodes.append(n.node)
            total.gpus += count
            if n.driver:
                total.drivers[n.driver] += 1
        if n.source == "nvml" and n.model:
            totals[n.model].memory_bytes += sum(n.memory_bytes)
            totals[n.model].mig_instances += n.mig_instances
    flagged = driver_spread((n.node, n.models, n.driver) for n in nodes)
    result = []
    for n in nodes:
        if n.node in flagged:
            problems = (*n.driver_problems, (REASON_DRIVER_DIFFERS, flagged[n.node]))
            n = replace(n, driver_problems=problems)
        result.append(n)
    return Capacity(
        nodes=tuple(result),
        models=tuple(sorted(totals.values(), key=lambda t: (-t.gpus, t.model))),
    )
