"""The status page's GPU cells show the gpu_nodes verdict; they never compare counts themselves."""

from __future__ import annotations

from typing import Any

from collector.kube.facts import KubeFacts
from collector.rules import gpu_nodes
from collector.rules.model import Evidence, Verdict
from collector.statuspage import render_status_page
from tests.support.builders import PROFILE, cluster, kube_node
from tests.support.gpu_reports import gpu_report
from tests.support.nvml import FakeNvml
from tests.support.samples import entry, parse, view


def capacity_row(page: str, node: str) -> list[Any]:
    doc = parse(page)
    row = next(e for e in doc.by_id("capacity").iter() if e.attrs.get("data-node") == node)
    return [e for e in row.iter() if e.tag == "td"]


def red(cells: list[Any]) -> int:
    return sum("bad" in c.attrs.get("class", "") for c in cells)


def judged_page(entries: list[Any], kube: KubeFacts) -> str:
    """The page with the verdict the real rule gives for these entries."""
    plain = view(entries, kube=kube)
    verdict = gpu_nodes.evaluate(
        Evidence(state=plain.state, profile=PROFILE, now=plain.state.taken_at, kube=kube)
    )
    return render_status_page(view(entries, (verdict,), kube=kube))


def kube(**allocatable: int) -> KubeFacts:
    return cluster("v1.17.0", *(kube_node(n, gpus=g) for n, g in allocatable.items()))


def test_unreachable_nvml_is_a_grey_note_not_a_red_count() -> None:
    entries = [entry(gpu_report("gpu-a", "gpu-nvml-unreachable"))]
    cells = capacity_row(judged_page(entries, kube(**{"gpu-a": 8})), "gpu-a")
    # pci 8, driver (the kernel's count) 8, allocatable 8; NVML's 0 is nowhere.
    assert [c.text.split(" ")[0] for c in cells[-3:]] == ["8", "8", "8"]
    assert red(cells) == 0
    assert "NVML not reachable from the agent" in cells[-2].text


def test_fallen_off_bus_is_red_with_the_rules_note() -> None:
    entries = [entry(gpu_report("gpu-a", "gpu-fallen-off-bus", FakeNvml(7)))]
    cells = capacity_row(judged_page(entries, kube(**{"gpu-a": 7})), "gpu-a")
    assert red(cells) == 3
    assert "1 bound to no driver" in cells[-2].text


def test_passthrough_named_and_not_red() -> None:
    entries = [entry(gpu_report("gpu-a", "gpu-vfio-passthrough", FakeNvml(7)))]
    cells = capacity_row(judged_page(entries, kube(**{"gpu-a": 7})), "gpu-a")
    assert red(cells) == 0
    assert "1 passthrough (vfio-pci)" in cells[-2].text


def test_the_page_follows_the_verdict_not_the_counts() -> None:
    """Counts that differ but a verdict that flags nothing (e.g. held by hysteresis):
    nothing red. Equal counts but a flagged node: red. The page only shows."""
    entries = [
        entry(gpu_report("gpu-a", "gpu-fallen-off-bus", FakeNvml(7))),
        entry(gpu_report("gpu-b", "gpu-8-healthy", FakeNvml(8))),
    ]
    flags_b = Verdict("gpu_nodes", "warn", "as the rule says", nodes=("gpu-b",))
    page = render_status_page(view(entries, (flags_b,)))
    assert red(capacity_row(page, "gpu-a")) == 0
    assert red(capacity_row(page, "gpu-b")) == 3
    passing = Verdict("gpu_nodes", "pass", "ok", nodes=("gpu-a", "gpu-b"))
    page = render_status_page(view(entries, (passing,)))
    assert red(capacity_row(page, "gpu-a")) == red(capacity_row(page, "gpu-b")) == 0
