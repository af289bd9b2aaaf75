"""Status page rendering from Published values: banner, requirements, egress cells, totals,
stale nodes, and that nothing an agent sent can become markup."""

from __future__ import annotations

import re

from collector.kube.facts import KubeFacts, KubeNode
from collector.published import Published
from collector.rules import cluster_ready, evaluate_all
from collector.rules.model import Evidence, Verdict
from collector.statuspage import render_status_page
from preflight.profile import load_profile
from preflight.v1 import report_pb2 as pb
from tests.support.samples import (
    HOSTILE_CPU,
    HOSTILE_MESSAGE,
    HOSTILE_NODE,
    HOSTILE_NODE_2,
    HOSTILE_SOURCE,
    HOSTILE_TARGET,
    HOSTILES,
    NOW,
    TARGETS,
    cluster_reports,
    down,
    entry,
    node_report,
    parse,
    up,
    view,
)

VERDICTS = (
    Verdict("kubernetes_version", "pass", "v1.17.3 ≥ 1.17 (recommended)", since=NOW - 7200),
    Verdict(
        "egress_install",
        "fail",
        "1 node×target pairs unreachable: gpu-node-2 → gcr.io/run-ai-prod: dns_nxdomain",
        nodes=("gpu-node-2",),
        targets=("gcr.io/run-ai-prod",),
        since=NOW - 12 * 60,
    ),
    Verdict("egress_runtime", "pass", "all nodes reach all runtime targets", since=NOW - 60),
    Verdict("gpu_nodes", "warn", "gpu-node-2: 8 PCI, 7 driver", nodes=("gpu-node-2",)),
    Verdict("shared_volume", "unknown", "not judged yet"),
)


def cluster_view(**kw: object) -> Published:
    return view([entry(r) for r in cluster_reports()], VERDICTS, **kw)  # type: ignore[arg-type]


def test_banner_names_failing_requirements_per_phase() -> None:
    doc = parse(render_status_page(cluster_view()))
    banner = doc.by_id("readiness")
    install = doc.by_id("readiness-install")
    assert install.attrs["data-ready"] == "false"
    assert install.text.startswith("NOT ready to install: ")
    # Blocking = failing or unknown; a warn does not block.
    assert "egress_install (fail)" in install.text
    assert "shared_volume (unknown)" in install.text
    assert "gpu_nodes" not in install.text
    assert "kubernetes_version" not in install.text
    runtime = doc.by_id("readiness-runtime")
    assert runtime.text.startswith("Ready to run Run:AI")
    assert "with warnings: gpu_nodes" in runtime.text
    assert banner.with_class("not-ready") == [install]


def test_banner_ready_to_install() -> None:
    page = render_status_page(
        view(
            [entry(node_report("n1"))],
            (Verdict("egress_install", "pass", "ok"),),
            ready=(("install", True), ("runtime", True)),
        )
    )
    banner = parse(page).by_id("readiness")
    assert "Ready to install Run:AI" in banner.text
    assert "NOT" not in banner.text


def test_requirement_rows_state_reason_and_since() -> None:
    doc = parse(render_status_page(cluster_view()))
    rows = {
        e.attrs["data-requirement"]: e
        for e in doc.by_id("requirements").iter()
        if e.tag == "tr" and "data-requirement" in e.attrs
    }
    assert list(rows) == [v.requirement for v in VERDICTS]
    failing = rows["egress_install"]
    assert "req-fail" in failing.attrs["class"]
    assert "gcr.io/run-ai-prod: dns_nxdomain" in failing.text
    since = next(e for e in failing.iter() if e.tag == "time")
    assert since.text == "since 12m ago"
    assert since.attrs["title"] == "2023-11-14T22:01:20Z"  # NOW - 12 min, in UTC
    assert "since 2h ago" in rows["kubernetes_version"].text
    assert "—" in rows["gpu_nodes"].text  # no since yet


def test_failing_cell_says_reason_and_phase_with_message_on_hover() -> None:
    doc = parse(render_status_page(cluster_view()))
    matrix = doc.by_id("egress-matrix")
    cells = {
        (c.attrs["data-node"], c.attrs["data-target"]): c
        for c in matrix.iter()
        if "data-node" in c.attrs
    }
    bad = cells[("gpu-node-2", "gcr.io/run-ai-prod")]
    assert bad.attrs["class"] == "cell-down"
    assert bad.text == "dns_nxdomain at resolve"
    assert bad.attrs["title"].startswith("getaddrinfo gcr.io: Name or service not known")
    assert "last up 10m ago" in bad.attrs["title"]
    good = cells[("gpu-node-1", "gcr.io/run-ai-prod")]
    assert good.attrs["class"] == "cell-up"
    assert good.text == "up 42 ms"
    assert cells[("cpu-node-3", "app.run.ai")].text == "connect_refused at connect"
    # Columns: the union of every node's targets, profile order first.
    header = [e.text for e in matrix.iter() if e.tag == "th"][: len(TARGETS) + 2]
    assert header == ["node", *TARGETS, HOSTILE_TARGET]
    # A node that did not probe the hostile target gets an empty cell, not a made-up state.
    missing = cells[("gpu-node-1", HOSTILE_TARGET)]
    assert missing.attrs["class"] == "cell-none"
    assert len(matrix.with_class("cell-down")) == 4


def test_capacity_totals_and_gpu_mismatch() -> None:
    doc = parse(render_status_page(cluster_view()))
    totals = doc.by_id("capacity-totals")
    cells = [e.text for e in totals.iter() if e.tag == "td"]
    # cores 32+32+16+4+2, GiB 256+256+64+16+4, PCI 8+8, driver 8+7, allocatable unknown.
    assert cells == ["", "86", "596.0", "16", "15", "—"]
    assert "5 nodes" in totals.text
    row = next(e for e in doc.by_id("capacity").iter() if e.attrs.get("data-node") == "gpu-node-2")
    assert [e.text for e in row.iter() if e.tag == "td"][-3:] == ["8", "7", "—"]
    flagged = [e for e in row.iter() if e.tag == "td" and "bad" in e.attrs.get("class", "")]
    assert len(flagged) == 3


def test_capacity_uses_kubernetes_allocatable_and_lists_nodes_without_agent() -> None:
    def kube_node(name: str, gpus: int) -> KubeNode:
        return KubeNode(
            name=name,
            control_plane=False,
            roles=(),
            taints=(),
            capacity_cpu=8,
            capacity_memory_bytes=32 * 1024**3,
            capacity_gpus=gpus,
            allocatable_cpu=7.5,
            allocatable_memory_bytes=30 * 1024**3,
            allocatable_gpus=gpus,
            kubelet_version="v1.17.3",
            container_runtime_version="containerd://1.6.8",
            ready=True,
        )

    kube = KubeFacts(
        server_version="v1.17.3",
        nodes=(kube_node("gpu-node-1", 8), kube_node("gpu-node-2", 7), kube_node("lonely", 0)),
        error=None,
    )
    doc = parse(render_status_page(cluster_view(kube=kube)))
    totals = [e.text for e in doc.by_id("capacity-totals").iter() if e.tag == "td"]
    # lonely adds its Kubernetes capacity (8 cores, 32 GiB); allocatable 8+7+0.
    assert totals == ["", "94", "628.0", "16", "15", "15"]
    lonely = [e for e in doc.by_id("nodes").iter() if e.attrs.get("data-node") == "lonely"]
    assert "no agent" in lonely[0].text
    row = next(e for e in doc.by_id("capacity").iter() if e.attrs.get("data-node") == "gpu-node-1")
    assert [e.text for e in row.iter() if e.tag == "td"][-3:] == ["8", "8", "8"]


def test_stale_node_greyed_and_labelled_with_report_age_and_skew() -> None:
    entries = [
        entry(node_report("fresh"), age=3, skew=0.4),
        entry(node_report("silent"), age=600, up_=False, skew=-12.5),
    ]
    doc = parse(render_status_page(view(entries)))
    rows = {
        e.attrs["data-node"]: e
        for e in doc.by_id("nodes").iter()
        if e.tag == "tr" and "data-node" in e.attrs
    }
    assert "stale" in rows["silent"].attrs["class"]
    assert "class" not in rows["fresh"].attrs
    assert "10m ago" in rows["silent"].text and "-12.5 s" in rows["silent"].text
    assert "3s ago" in rows["fresh"].text and "+0.4 s" in rows["fresh"].text
    matrix_row = next(
        e for e in doc.by_id("egress-matrix").iter() if e.tag == "tr" and "silent" in e.text
    )
    assert matrix_row.attrs["class"] == "stale"
    assert matrix_row.with_class("tag")[0].text == "stale"


def test_mounts_show_state_source_writable_and_peers() -> None:
    doc = parse(render_status_page(cluster_view()))
    rows = {
        e.attrs["data-node"]: e
        for e in doc.by_id("mounts").iter()
        if e.tag == "tr" and "data-node" in e.attrs
    }
    assert set(rows) == {"gpu-node-1", "gpu-node-2", HOSTILE_NODE}
    first = [e.text for e in rows["gpu-node-1"].iter() if e.tag in ("td", "th")]
    assert first[0] == "gpu-node-1"
    assert first[1:5] == ["/mnt/runai", "mounted", "nfs4", "nas:/export/runai"]
    assert first[5].startswith("yes")
    assert first[6] == "2"


def test_everything_an_agent_sent_stays_text() -> None:
    page = render_status_page(cluster_view())
    doc = parse(page)
    elements = doc.iter()
    assert not [e for e in elements if e.tag in ("script", "img", "svg", "iframe", "object")]
    handlers = [(e.tag, k) for e in elements for k in e.attrs if k.startswith("on")]
    assert handlers == []
    text = doc.text
    for hostile in (HOSTILE_NODE, HOSTILE_NODE_2, HOSTILE_TARGET, HOSTILE_CPU, HOSTILE_SOURCE):
        assert hostile in text, hostile
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    # In attributes, quotes are escaped too: the message is one title, whole.
    titles = [e.attrs.get("title", "") for e in elements]
    assert any(t.startswith(HOSTILE_MESSAGE) for t in titles)
    nodes = {e.attrs["data-node"] for e in elements if "data-node" in e.attrs}
    assert {HOSTILE_NODE, HOSTILE_NODE_2} <= nodes
    for hostile in HOSTILES:
        assert hostile not in page


def test_hostile_strings_in_verdict_reasons_are_escaped() -> None:
    verdict = Verdict(
        "egress_install",
        "fail",
        f"{HOSTILE_NODE} → {HOSTILE_TARGET}: timeout",
        nodes=(HOSTILE_NODE,),
        targets=(HOSTILE_TARGET,),
    )
    page = render_status_page(view([entry(node_report(HOSTILE_NODE))], (verdict,)))
    doc = parse(page)
    assert not [e for e in doc.iter() if e.tag in ("script", "img")]
    assert "egress_install (fail)" in doc.by_id("readiness").text
    assert f"{HOSTILE_NODE} → {HOSTILE_TARGET}: timeout" in doc.by_id("requirements").text


def test_with_the_real_rules_and_profile() -> None:
    """The page renders what the collector's own rules say about the sample cluster."""
    entries = [entry(r) for r in cluster_reports()]
    state = view(entries).state
    verdicts = evaluate_all(Evidence(state=state, profile=load_profile("runai-2020"), now=NOW))
    data = Published(
        state=state, verdicts=tuple(verdicts), ready=tuple(cluster_ready(verdicts).items())
    )
    doc = parse(render_status_page(data))
    assert doc.by_id("readiness-install").text.startswith("NOT ready to install:")
    assert "egress_install (fail)" in doc.by_id("readiness-install").text
    assert "egress_runtime (fail)" in doc.by_id("readiness-runtime").text
    assert not [e for e in doc.iter() if e.tag in ("script", "img")]


def test_refreshes_itself_and_has_no_external_assets() -> None:
    page = render_status_page(cluster_view())
    doc = parse(page)
    metas = [e.attrs for e in doc.iter() if e.tag == "meta"]
    assert {"http-equiv": "refresh", "content": "15"} in metas
    assert not [e for e in doc.iter() if e.tag in ("link", "script", "img")]
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "url(" not in page


def test_a_thousand_nodes_render_every_cell() -> None:
    reports = []
    for i in range(1000):
        egress = [up(t) for t in TARGETS]
        if i % 10 == 0:
            egress[2] = down(TARGETS[2], pb.REASON_CONNECT_TIMEOUT, pb.PHASE_CONNECT, "timed out")
        reports.append(node_report(f"node-{i:04d}", pci=8, driver=8, egress=egress))
    page = render_status_page(view([entry(r) for r in reports], VERDICTS))
    assert page.count('class="cell-up"') == 1000 * len(TARGETS) - 100
    assert page.count('class="cell-down"') == 100
    totals = parse(page).by_id("capacity-totals")
    assert [e.text for e in totals.iter() if e.tag == "td"][1:5] == [
        "32000",
        "256000.0",
        "8000",
        "8000",
    ]


def test_empty_collector() -> None:
    doc = parse(render_status_page(view([], (), ready=(("install", False), ("runtime", False)))))
    assert doc.by_id("readiness-install").text.startswith("NOT ready to install")
    assert "No egress results" in doc.by_id("egress-matrix").text
    assert [e.text for e in doc.by_id("capacity-totals").iter() if e.tag == "td"] == [
        "",
        "0",
        "0.0",
        "0",
        "0",
        "—",
    ]
