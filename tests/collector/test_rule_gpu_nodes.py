"""gpu_nodes judged on what agents send from each fixture host state (tests/fixtures/hostfs/gpu-*).

Reports come from the real agent code on the fixture trees (tests/support/gpu_reports.py);
allocatable comes from a Kubernetes view, or is absent (standalone).
"""

from __future__ import annotations

from dataclasses import dataclass

import pynvml
import pytest

from collector.kube.facts import KubeFacts
from collector.rules import gpu_nodes
from collector.rules.model import Verdict
from preflight.v1 import report_pb2 as pb
from tests.support.builders import cluster, entry, kube_node, report, view
from tests.support.gpu_reports import gpu_report
from tests.support.nvml import FakeNvml

MISMATCH = pynvml.NVMLError(pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH)


@dataclass(frozen=True)
class Case:
    tree: str
    nvml: FakeNvml | None  # None: the real binding, which cannot reach NVML here
    allocatable: int | None  # None: standalone, no Kubernetes API
    status: str
    in_reason: tuple[str, ...]
    note: str = ""  # the rule's note on the node ("" = none)
    not_in_reason: tuple[str, ...] = ()


CASES = {
    "healthy, NVML reachable": Case(
        "gpu-8-healthy", FakeNvml(8), 8, "pass", ("1 GPU node, 8 GPUs, counts agree",)
    ),
    "healthy, NVML unreachable (module loaded)": Case(
        "gpu-nvml-unreachable",
        None,
        8,
        "pass",
        ("counts agree", "NVML not reachable from the agent on 1 node"),
        note="NVML not reachable from the agent",
        not_in_reason=("no driver", "disagree"),
    ),
    "one GPU fallen off the bus (PCI 8, driver 7)": Case(
        "gpu-fallen-off-bus",
        FakeNvml(7),
        7,
        "warn",
        ("GPU counts disagree on 1 node", "gpu-a: 8 pci / 7 kernel / 7 nvml / 7 allocatable"),
        note="1 bound to no driver",
    ),
    "fallen off the bus, NVML unreachable": Case(
        "gpu-fallen-off-bus",
        FakeNvml(0, init_error=pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)),
        7,
        "warn",
        ("gpu-a: 8 pci / 7 kernel / 7 allocatable (1 bound to no driver)",),
        note="1 bound to no driver; NVML not reachable from the agent",
    ),
    "a GPU left on vfio-pci": Case(
        "gpu-vfio-passthrough",
        FakeNvml(7),
        7,
        "pass",
        ("7 GPUs, counts agree", "passthrough (vfio-pci) GPUs: gpu-a 1"),
        note="1 passthrough (vfio-pci)",
        not_in_reason=("disagree", "lost"),
    ),
    "nvidia module not loaded": Case(
        "gpu-module-not-loaded",
        None,
        0,
        "warn",
        (
            "gpu-a: 8 pci / 0 kernel / 0 allocatable "
            "(nvidia module not loaded, 8 bound to no driver)",
        ),
        note="nvidia module not loaded; 8 bound to no driver",
    ),
    "NVML driver/library version mismatch": Case(
        "gpu-8-healthy",
        FakeNvml(8, init_error=MISMATCH),
        8,
        "warn",
        ("NVML driver/library version mismatch", "on 1 node: gpu-a"),
        note="NVML driver/library version mismatch",
        not_in_reason=("disagree",),
    ),
    "device plugin missing": Case(
        "gpu-8-healthy",
        FakeNvml(8),
        0,
        "warn",
        ("gpu-a: 8 pci / 8 kernel / 8 nvml / 0 allocatable",),
    ),
    "standalone, NVML unreachable": Case(
        "gpu-nvml-unreachable",
        None,
        None,
        "pass",
        ("8 GPUs, counts agree (allocatable unknown: no Kubernetes API)",),
        note="NVML not reachable from the agent",
    ),
}


def judge(case: Case) -> Verdict:
    nodes = [entry(gpu_report("gpu-a", case.tree, case.nvml)), entry(report("cpu-b"))]
    kube: KubeFacts | None = None
    if case.allocatable is not None:
        kube = cluster(
            "v1.17.0",
            kube_node("gpu-a", gpus=case.allocatable, allocatable_gpus=case.allocatable),
            kube_node("cpu-b"),
        )
    return gpu_nodes.evaluate(view(*nodes, kube=kube))


@pytest.mark.parametrize("name", sorted(CASES))
def test_gpu_nodes_per_host_state(name: str) -> None:
    case = CASES[name]
    verdict = judge(case)
    assert verdict.status == case.status, verdict.reason
    for text in case.in_reason:
        assert text in verdict.reason, verdict.reason
    for text in case.not_in_reason:
        assert text not in verdict.reason, verdict.reason
    assert dict(verdict.node_notes).get("gpu-a", "") == case.note
    assert "cpu-b" not in dict(verdict.node_notes)
    # warn: the nodes to look at; pass: the GPU nodes (the CPU node is never one).
    assert verdict.nodes == ("gpu-a",)


def test_nvml_absence_alone_never_warns_on_many_nodes() -> None:
    nodes = [entry(gpu_report(f"gpu-{i}", "gpu-nvml-unreachable")) for i in range(5)]
    kube = cluster("v1.17.0", *(kube_node(f"gpu-{i}", gpus=8) for i in range(5)))
    verdict = gpu_nodes.evaluate(view(*nodes, kube=kube))
    assert verdict.status == "pass", verdict.reason
    assert "5 GPU nodes, 40 GPUs" in verdict.reason


def test_an_agent_without_the_kernel_view_is_judged_by_nvml_as_before() -> None:
    # Positive control of the NVML-only path: an older agent's 0 driver still warns.
    old = report("gpu-a", pci=8, driver=0)
    assert old.gpus.kernel_module == pb.KERNEL_MODULE_UNSPECIFIED
    verdict = gpu_nodes.evaluate(view(entry(old)))
    assert verdict.status == "warn" and "8 pci / 0 driver" in verdict.reason


def test_only_passthrough_gpus_is_no_gpu_node() -> None:
    message = gpu_report("vm-host", "gpu-vfio-passthrough", FakeNvml(7))
    # Every GPU of this host handed to VMs: nothing left for Run:ai.
    for d in message.gpus.pci_devices:
        d.kernel_driver = "vfio-pci"
    message.gpus.passthrough_count = message.gpus.pci_count
    message.gpus.kernel_driver_count = 0
    message.gpus.driver_status = pb.DRIVER_STATUS_UNREACHABLE
    verdict = gpu_nodes.evaluate(view(entry(message)))
    assert verdict.status == "fail", verdict.reason
    assert "passthrough (vfio-pci) GPUs: vm-host 8" in verdict.reason


def test_excluded_gpu_is_named() -> None:
    message = gpu_report("gpu-a", "gpu-8-healthy", FakeNvml(7))
    message.gpus.kernel_gpus[2].excluded = True
    message.gpus.kernel_driver_count = 7  # as the agent counts it (tests/agent)
    verdict = gpu_nodes.evaluate(view(entry(message)))
    assert verdict.status == "warn"
    assert "8 pci / 7 kernel / 7 nvml (1 excluded by the driver)" in verdict.reason


def test_nouveau_is_named() -> None:
    message = gpu_report("gpu-a", "gpu-module-not-loaded")
    for d in message.gpus.pci_devices:
        d.kernel_driver = "nouveau"
    verdict = gpu_nodes.evaluate(view(entry(message)))
    assert verdict.status == "warn"
    assert "(nvidia module not loaded, 8 nouveau)" in verdict.reason


def _on_driver(name: str, version: str, model: str = "NVIDIA A100-SXM4-80GB") -> pb.NodeReport:
    return gpu_report(name, "gpu-8-healthy", FakeNvml(8, name=model, driver_version=version))


def test_a_rolling_driver_upgrade_left_half_done_warns_on_the_minority() -> None:
    nodes = [
        entry(_on_driver("a100-1", "550.54.14")),
        entry(_on_driver("a100-2", "550.54.14")),
        entry(_on_driver("a100-3", "535.129.03")),
        # Another model on another driver is no spread: each model is compared with itself.
        entry(_on_driver("h100-1", "535.129.03", model="NVIDIA H100 80GB HBM3")),
    ]
    verdict = gpu_nodes.evaluate(view(*nodes))
    assert verdict.status == "warn", verdict.reason
    assert verdict.nodes == ("a100-3",)
    assert (
        "drivers differ between NVIDIA A100-SXM4-80GB nodes (535.129.03 on 1, 550.54.14 on 2 "
        "nodes): a100-3" in verdict.reason
    )
    assert "drivers differ" in dict(verdict.node_notes)["a100-3"]
    assert "a100-1" not in dict(verdict.node_notes)
    # Finished: every A100 on 550, and the verdict passes again.
    nodes[2] = entry(_on_driver("a100-3", "550.54.14"))
    assert gpu_nodes.evaluate(view(*nodes)).status == "pass"


def test_a_driver_tie_names_every_side() -> None:
    nodes = [entry(_on_driver("a100-1", "550.54.14")), entry(_on_driver("a100-2", "535.129.03"))]
    verdict = gpu_nodes.evaluate(view(*nodes))
    assert verdict.status == "warn" and verdict.nodes == ("a100-1", "a100-2"), verdict.reason
