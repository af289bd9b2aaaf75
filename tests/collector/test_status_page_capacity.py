"""The status page's GPU capacity section for a 3-node, 2-model cluster built by the agent code."""

from __future__ import annotations

from collector.capacity import REASON_DRIVER_DIFFERS, REASON_VERSION_MISMATCH, gpu_capacity
from collector.published import Published
from collector.state import NodeEntry
from collector.statuspage import render_status_page
from tests.support.builders import entry
from tests.support.capacity_cluster import A100, H100, capacity_reports, capacity_view
from tests.support.samples import Element, parse


def view() -> Published:
    return capacity_view(entries())


def entries() -> tuple[NodeEntry, ...]:
    return tuple(entry(r) for r in capacity_reports())


def rows(root: Element, table: str) -> dict[str, Element]:
    found = next(e for e in root.iter() if e.attrs.get("id") == table)
    return {
        e.attrs.get("data-node") or e.attrs.get("data-model", ""): e
        for e in found.iter()
        if e.tag == "tr" and ("data-node" in e.attrs or "data-model" in e.attrs)
    }


def cells(row: Element) -> list[Element]:
    return [c for c in row.children if isinstance(c, Element) and c.tag in ("td", "th")]


def test_capacity_per_node_and_model() -> None:
    capacity = gpu_capacity(entries())
    by_node = {n.node: n for n in capacity.nodes}
    assert by_node["a100-1"].models == ((A100, 8),) and by_node["a100-1"].source == "nvml"
    assert by_node["a100-1"].mig_instances == 3 and by_node["a100-1"].mig_enabled == 1
    # NVML refused (version mismatch): model and driver from the kernel's records.
    assert by_node["a100-2"].models == ((A100, 8),) and by_node["a100-2"].source == "kernel"
    assert by_node["a100-2"].driver == "535.129.03"
    assert by_node["h100-1"].models == ((H100, 8),) and by_node["h100-1"].cuda == "12.4"
    assert by_node["h100-1"].images_free == 410 * 1024**3
    assert by_node["h100-1"].images_role == "container_runtime"
    reasons = {n.node: [r for r, _ in n.driver_problems] for n in capacity.nodes}
    # A tie between two A100 drivers flags both; H100 nodes agree among themselves.
    assert reasons == {
        "a100-1": [REASON_DRIVER_DIFFERS],
        "a100-2": [REASON_VERSION_MISMATCH, REASON_DRIVER_DIFFERS],
        "h100-1": [],
    }
    models = {t.model: t for t in capacity.models}
    assert models[A100].gpus == 16 and models[A100].nodes == ["a100-1", "a100-2"]
    assert dict(models[A100].drivers) == {"550.54.14": 1, "535.129.03": 1}
    assert models[H100].gpus == 8 and models[H100].memory_bytes == 8 * 85_899_345_920


def test_majority_driver_is_not_flagged() -> None:
    reports = capacity_reports()
    third = reports[0].__deepcopy__()
    third.node_name = "a100-3"
    capacity = gpu_capacity((*entries(), entry(third)))
    reasons = {n.node: [r for r, _ in n.driver_problems] for n in capacity.nodes}
    assert reasons["a100-1"] == [] and reasons["a100-3"] == []  # 550 is the majority
    assert REASON_DRIVER_DIFFERS in reasons["a100-2"]


def test_page_shows_red_cells_with_their_reason() -> None:
    root = parse(render_status_page(view()))
    nodes = rows(root, "gpu-capacity")
    assert set(nodes) == {"a100-1", "a100-2", "h100-1"}
    a100_2 = cells(nodes["a100-2"])
    assert "8 × NVIDIA A100-SXM4-80GB" in a100_2[1].text
    driver = a100_2[4]
    assert "cell-bad" in driver.attrs["class"]
    assert driver.attrs["data-reason"] == "version_mismatch driver_differs"
    assert "driver/library version mismatch" in driver.attrs["title"]
    h100 = cells(nodes["h100-1"])
    assert "cell-bad" not in h100[4].attrs.get("class", "")
    assert h100[5].text == "12.4" and h100[6].text.startswith("410 ")
    assert "3 on 1 GPUs" in cells(nodes["a100-1"])[3].text
    models = rows(root, "gpu-models")
    assert [c.text for c in cells(models[H100])][:3] == [H100, "1", "8"]
    assert cells(models[A100])[-1].attrs["data-reason"] == "driver_differs"
