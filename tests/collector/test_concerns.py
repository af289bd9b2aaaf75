"""The collector's concern registry: each concern yields only its own families, every
section it owns is on the page and reachable from the header, no two concerns write the
same JSON field, and the page colours what the rules judged, not what it would judge."""

from __future__ import annotations

from collections import Counter

import pytest

from collector.concerns import CONCERNS, FAMILIES, PAGE, Concern, NodeJson
from collector.exposition import node_samples
from collector.kube.facts import KubeFacts
from collector.kube.platform_facts import OK, ClusterPolicyInfo, PlatformFacts, ReadOutcome
from collector.published import Published
from collector.rules.model import Verdict
from collector.statuspage import render_status_page
from preflight.v1 import report_pb2 as pb
from tests.support.capacity_cluster import capacity_reports, capacity_view
from tests.support.samples import cluster_reports, entry, node_report, parse, view


def views() -> list[Published]:
    clocked = node_report("clocked")
    clocked.clock.CopyFrom(pb.ClockFacts(available=True, synchronised=True, state="ok"))
    operator = PlatformFacts(
        cluster_policy=OK,
        cluster_policies=(
            ClusterPolicyInfo("cluster-policy", "ready", "gpu-operator", "v25.10.0"),
        ),
        operator=ReadOutcome("not_installed"),
    )
    kube = KubeFacts(server_version="v1.30.2", nodes=(), error=None, platform=operator)
    return [
        view([entry(r) for r in cluster_reports()]),
        capacity_view(tuple(entry(r) for r in capacity_reports())),
        view([entry(clocked)], kube=kube),
        view([]),
    ]


def test_every_family_has_one_owner_and_one_name() -> None:
    owners = Counter(f for c in CONCERNS for f in c.families)
    assert set(owners.values()) == {1}
    assert set(owners) == set(FAMILIES)
    names = Counter(f.name for f in FAMILIES)
    assert [n for n, k in names.items() if k > 1] == []


@pytest.mark.parametrize("concern", CONCERNS, ids=lambda c: c.name)
def test_a_concern_yields_only_its_own_families(concern: Concern) -> None:
    own = set(concern.families)
    yielded = set()
    for data in views():
        for node in data.state.nodes:
            if concern.node_samples is not None:
                yielded |= {f for f, _, _ in concern.node_samples(node, 8, "v1")}
        if concern.cluster_samples is not None:
            yielded |= {f for f, _, _ in concern.cluster_samples(data, [{"quay.io": 1.0}])}
    assert yielded <= own
    if concern.node_samples is not None or concern.cluster_samples is not None:
        assert yielded, f"{concern.name} yielded nothing over the sample clusters"


def test_node_samples_is_the_union_of_the_concerns() -> None:
    data = views()[0]
    for node in data.state.nodes:
        joined = list(node_samples(node, 8, "v1"))
        parts = [
            s for c in CONCERNS if c.node_samples is not None for s in c.node_samples(node, 8, "v1")
        ]
        assert joined == parts and joined


def test_every_section_is_on_the_page_once_and_every_link_lands() -> None:
    owned = [s for c in CONCERNS for s in c.sections]
    assert Counter(owned) == Counter(PAGE)
    for data in views():
        doc = parse(render_status_page(data))
        for section in PAGE:
            doc.by_id(section.anchor)  # exactly one element with that id
        links = [e.attrs["href"] for e in doc.iter() if e.tag == "a" and "href" in e.attrs]
        assert [h for h in links if h.startswith("#")] == [f"#{s.anchor}" for s in PAGE if s.nav]


def test_no_two_concerns_write_the_same_json_field() -> None:
    data = views()[0]
    node = data.state.nodes[0]
    context = NodeJson(data.state.taken_at)
    seen: Counter[str] = Counter()
    for c in CONCERNS:
        for fields in (c.summary, c.detail):
            if fields is not None:
                seen.update(list(fields(node, context)))
    assert seen and set(seen.values()) == {1}


def skew_classes(verdicts: tuple[Verdict, ...]) -> dict[str, str]:
    entries = [
        entry(node_report("calm"), skew=0.2),
        entry(node_report("far"), skew=12.5),
        entry(node_report("drifting"), skew=0.3),
    ]
    doc = parse(render_status_page(view(entries, verdicts)))
    classes = {}
    for row in doc.by_id("nodes").iter():
        if row.tag == "tr" and "data-node" in row.attrs:
            cell = next(e for e in row.iter() if e.tag == "td" and e.text.endswith(" s"))
            classes[row.attrs["data-node"]] = cell.attrs["class"]
    return classes


def test_the_skew_cell_shows_the_clock_sync_verdict_not_a_threshold_of_its_own() -> None:
    # No clock_sync requirement in the profile: 12.5 s is shown, not judged.
    assert skew_classes(()) == {"calm": "num", "far": "num", "drifting": "num"}
    verdicts = (
        Verdict(
            "clock_sync", "fail", "1 node off by more than 10 s: far (+12.5 s)", nodes=("far",)
        ),
    )
    assert skew_classes(verdicts) == {"calm": "num", "far": "num bad", "drifting": "num"}
    unsynced = (Verdict("clock_sync", "warn", "1 node not NTP-synchronised", nodes=("drifting",)),)
    assert skew_classes(unsynced) == {"calm": "num", "far": "num", "drifting": "num warn"}
    passing = (Verdict("clock_sync", "pass", "3 nodes NTP-synchronised"),)
    assert skew_classes(passing) == {"calm": "num", "far": "num", "drifting": "num"}
