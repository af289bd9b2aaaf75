"""Structure of the Grafana dashboard, and every panel's PromQL parses (real promtool).

The end-to-end test runs the same queries (tests/support/dashboard.py) against a real
Prometheus; here only the JSON and the PromQL syntax are checked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.dashboard import (
    DASHBOARD,
    MAY_BE_EMPTY,
    UnknownVariableError,
    dashboard_queries,
    dashboard_query_specs,
    iter_panels,
    substitute,
)
from tests.support.promql import (
    CONTRACT_METRICS,
    PROMTOOL_MISSING,
    documented_metrics,
    metric_names,
    promql_parse_errors,
    promtool,
)

DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
DASHBOARD_SCHEMA = (
    Path(__file__).resolve().parents[1] / "fixtures" / "grafana-dashboard.schema.json"
)


@pytest.fixture(scope="module")
def dash() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def _variables(dash: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dash["templating"]["list"]}


def _query_panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in iter_panels(dash["panels"]) if p["type"] != "row"]


def test_stable_identity(dash: dict[str, Any]) -> None:
    assert dash["uid"] == "preflight-overview"
    assert dash["title"]
    assert isinstance(dash["schemaVersion"], int)


def test_datasource_variable(dash: dict[str, Any]) -> None:
    ds = _variables(dash)["datasource"]
    assert ds["type"] == "datasource"
    assert ds["query"] == "prometheus"


@pytest.mark.parametrize(
    ("name", "metric", "label"),
    [("node", "preflight_agent_up", "node"), ("target", "preflight_egress_up", "target")],
)
def test_template_variables(dash: dict[str, Any], name: str, metric: str, label: str) -> None:
    var = _variables(dash)[name]
    assert var["type"] == "query"
    assert var["datasource"] == DATASOURCE_REF
    query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
    assert query == f"label_values({metric}, {label})"
    # Panels filter with =~"$var": "All" must be a regex that matches everything.
    assert var["includeAll"] and var["multi"] and var["allValue"] == ".*"


def test_every_panel_uses_the_datasource_variable(dash: dict[str, Any]) -> None:
    panels = _query_panels(dash)
    assert len(panels) >= 15
    for p in panels:
        assert p["datasource"] == DATASOURCE_REF, p["title"]
        assert p["targets"], f"panel {p['title']!r} has no queries"
        for t in p["targets"]:
            assert t["datasource"] == DATASOURCE_REF, p["title"]
            assert t["expr"].strip(), f"panel {p['title']!r} query {t['refId']} is empty"
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), p["title"]


def test_panel_ids_unique_and_titles_unique(dash: dict[str, Any]) -> None:
    panels = list(iter_panels(dash["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    titles = [p["title"] for p in _query_panels(dash)]
    assert len(titles) == len(set(titles))


def test_panels_do_not_overlap(dash: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for p in iter_panels(dash["panels"]):
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]


def test_required_content_is_there(dash: dict[str, Any]) -> None:
    exprs = " ".join(dashboard_queries())
    titles = " ".join(p["title"] for p in _query_panels(dash)).lower()
    for metric in (
        "preflight_cluster_ready",
        "preflight_requirement_status",
        "preflight_egress_up",
        "preflight_egress_phase_duration_seconds",
        "preflight_node_cpu_cores",
        "preflight_node_memory_bytes",
        "preflight_node_gpus",
        "preflight_agent_last_report_timestamp_seconds",
    ):
        assert metric in exprs, metric
    # The three counts gpu_nodes compares; NVML's ("driver") exists only where it
    # answered and shows in "GPUs by source" (sum by source).
    for source in ("pci", "kernel", "allocatable"):
        assert f'source="{source}"' in exprs
    assert "time() - max by (node) (preflight_agent_last_report_timestamp_seconds" in exprs
    for word in ("readiness", "requirement", "egress matrix", "latency", "capacity", "fresh"):
        assert word in titles, word
    matrix = next(p for p in _query_panels(dash) if p["title"].startswith("Egress matrix"))
    assert any(t["id"] == "groupingToMatrix" for t in matrix["transformations"])


def test_queries_filter_on_the_selected_node_and_target(dash: dict[str, Any]) -> None:
    for q in dashboard_query_specs():
        names = metric_names(q.raw_expr)
        if "preflight_egress_up" in names or "preflight_egress_phase_duration_seconds" in names:
            assert 'node=~"$node"' in q.raw_expr and 'target=~"$target"' in q.raw_expr, q.panel


def test_may_be_empty_names_real_queries() -> None:
    present = {(q.panel, q.ref_id) for q in dashboard_query_specs()}
    assert set(MAY_BE_EMPTY) <= present


def test_substitution() -> None:
    assert (
        substitute('rate(x{node=~"$node",t=~"${target}"}[$__rate_interval])')
        == 'rate(x{node=~".*",t=~".*"}[1m])'
    )
    with pytest.raises(UnknownVariableError, match=r"\$nope"):
        substitute("x{a=~'$nope'}")
    for q in dashboard_queries():
        assert "$" not in q


def test_every_metric_is_documented_and_in_the_contract() -> None:
    used = set().union(*(metric_names(q) for q in dashboard_queries()))
    assert used <= CONTRACT_METRICS, used - CONTRACT_METRICS
    assert used <= documented_metrics(), used - documented_metrics()


def test_every_query_parses() -> None:
    tool = promtool()
    if tool is None:
        pytest.skip(PROMTOOL_MISSING)
    errors = promql_parse_errors(dashboard_queries(), tool)
    assert errors is None, errors


def test_parse_check_catches_a_bad_query() -> None:
    tool = promtool()
    if tool is None:
        pytest.skip(PROMTOOL_MISSING)
    assert promql_parse_errors(["sum by (node (preflight_agent_up)"], tool) is not None


def test_dashboard_matches_the_import_schema(dash: dict[str, Any]) -> None:
    import jsonschema

    schema = json.loads(DASHBOARD_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(dash), key=lambda e: list(e.path)
    )
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])
    # The schema has teeth: a panel without gridPos or a bad refId is refused.
    broken = json.loads(json.dumps(dash))
    del broken["panels"][1]["gridPos"]
    broken["panels"][2]["targets"][0]["refId"] = "a-1"
    assert len(list(jsonschema.Draft202012Validator(schema).iter_errors(broken))) == 2


def test_capacity_rows_by_model_and_kube_state_metrics(dash: dict[str, Any]) -> None:
    titles = [p["title"] for p in iter_panels(dash["panels"])]
    assert "GPU capacity by model" in titles
    specs: dict[str, list[str]] = {q.panel: [] for q in dashboard_query_specs()}
    for q in dashboard_query_specs():
        specs[q.panel].append(q.raw_expr)
    by_model = " ".join(specs["GPUs by model"])
    assert "count by (model) (preflight_gpu_info" in by_model
    # Requests and allocatable are kube-state-metrics' own series, not recomputed.
    joined = " ".join(specs["GPU allocatable vs requested per node"])
    assert 'kube_node_status_allocatable{resource="nvidia_com_gpu"' in joined
    assert 'kube_pod_container_resource_requests{resource="nvidia_com_gpu"' in joined
