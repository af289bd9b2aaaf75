"""The shipped alert rules: promtool checks and unit tests, plus structural checks.

deploy/prometheus/preflight-rules.yaml is the one source of alert rules; its promtool
unit tests live in tests/prometheus/*.test.yaml, its runbooks in docs/operations.md.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.promql import (
    CONTRACT_METRICS,
    METRICS_DOC,
    OPERATIONS_DOC,
    PROMTOOL_MISSING,
    REPO,
    RULES_FILE,
    documented_metrics,
    metric_names,
    promql_parse_errors,
    promtool,
)

RULE_TESTS = sorted((REPO / "tests" / "prometheus").glob("*.test.yaml"))
RUNBOOK_BASE = "https://github.com/runai-preflight/preflight/blob/main/docs/operations.md#"
SEVERITIES = {"critical", "warning", "info"}
REQUIRED_ALERTS = {
    "PreflightEgressBroken",
    "PreflightEgressBrokenClusterWide",
    "PreflightEgressProxyDenied",
    "PreflightTLSIntercepted",
    "PreflightTLSCertificateExpiringSoon",
    "PreflightSharedVolumeMissing",
    "PreflightSharedVolumeStuck",
    "PreflightSharedVolumeNotShared",
    "PreflightAgentDown",
    "PreflightNodeWithoutAgent",
    "PreflightKubernetesVersionUnsupported",
    "PreflightClusterNotReady",
    "PreflightSystemNodesInsufficient",
    "PreflightGPUOperatorMissing",
    "PreflightGPUOperatorDegraded",
    "PreflightIngressControllerMissing",
    "PreflightPrometheusStackMissing",
    "PreflightDefaultStorageClassMissing",
    "PreflightContainerRuntimeUnsupported",
    "PreflightClockSkew",
    "PreflightClusterDomainCertificateInvalid",
}

# Identifying labels each alert's output carries; summary/description must name them.
NAMED_LABELS: dict[str, tuple[str, ...]] = {
    "PreflightEgressBroken": ("node", "target"),
    "PreflightEgressBrokenClusterWide": ("target",),
    "PreflightEgressProxyDenied": ("node", "target", "reason"),
    "PreflightTLSIntercepted": ("node", "target", "issuer"),
    "PreflightTLSCertificateExpiringSoon": ("target",),
    "PreflightSharedVolumeMissing": ("node", "path"),
    "PreflightSharedVolumeStuck": ("node", "path"),
    "PreflightSharedVolumeNotShared": ("node", "path"),
    "PreflightAgentDown": ("node",),
    "PreflightNodeWithoutAgent": ("node",),
    "PreflightKubernetesVersionUnsupported": ("requirement",),
    "PreflightClusterNotReady": ("phase",),
    "PreflightSystemNodesInsufficient": ("requirement",),
    "PreflightGPUOperatorMissing": ("requirement",),
    "PreflightGPUOperatorDegraded": ("requirement",),
    "PreflightIngressControllerMissing": ("requirement",),
    "PreflightPrometheusStackMissing": ("requirement",),
    "PreflightDefaultStorageClassMissing": ("requirement",),
    "PreflightContainerRuntimeUnsupported": ("requirement",),
    "PreflightClockSkew": ("requirement",),
    "PreflightClusterDomainCertificateInvalid": ("requirement",),
}
# Alerts keyed on preflight_egress_up, which has no reason label: the reason is looked
# up with a template query so that a changing reason does not restart `for:`.
REASON_BY_QUERY = {"PreflightEgressBroken", "PreflightEgressBrokenClusterWide"}


def _alerts() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _operations_anchors() -> set[str]:
    text = OPERATIONS_DOC.read_text(encoding="utf-8")
    return {_github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    tool = promtool()
    if tool is None:
        pytest.skip(PROMTOOL_MISSING)
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, timeout=120, cwd=REPO, check=False
    )


def test_promtool_check_rules() -> None:
    proc = _run("check", "rules", str(RULES_FILE))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in proc.stdout


def test_promtool_unit_tests() -> None:
    assert RULE_TESTS, "no tests/prometheus/*.test.yaml"
    proc = _run("test", "rules", *map(str, RULE_TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_required_alerts_exist() -> None:
    names = {a["alert"] for a in _alerts()}
    assert names >= REQUIRED_ALERTS, REQUIRED_ALERTS - names


@pytest.mark.parametrize("alert", _alerts(), ids=lambda a: a["alert"])
def test_alert_is_complete(alert: dict[str, Any]) -> None:
    assert alert["alert"].startswith("Preflight")
    assert alert.get("labels", {}).get("severity") in SEVERITIES
    ann = alert.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert str(ann.get(key, "")).strip(), f"{alert['alert']} lacks {key}"
    # A `for:` debounces single-report blips (absent() has its own reasons, still needs one).
    assert alert.get("for"), f"{alert['alert']} has no for:"
    # The labels that identify the failure must show up in the text an operator reads.
    text = ann["summary"] + ann["description"]
    for label in NAMED_LABELS.get(alert["alert"], ()):
        assert f"$labels.{label}" in text, f"{alert['alert']} does not name {label}"
    if alert["alert"] in REASON_BY_QUERY:
        assert ".Labels.reason" in text and "query" in text, alert["alert"]


@pytest.mark.parametrize("alert", _alerts(), ids=lambda a: a["alert"])
def test_runbook_section_exists(alert: dict[str, Any]) -> None:
    url = alert["annotations"]["runbook_url"]
    assert url.startswith(RUNBOOK_BASE), url
    anchor = url.removeprefix(RUNBOOK_BASE)
    assert anchor == _github_anchor(alert["alert"])
    assert anchor in _operations_anchors(), f"docs/operations.md has no section {alert['alert']}"


def test_rule_metrics_are_documented() -> None:
    text = RULES_FILE.read_text(encoding="utf-8")
    used = metric_names(text)
    assert used, "no metric found in the rules"
    assert used <= CONTRACT_METRICS, used - CONTRACT_METRICS
    assert used <= documented_metrics(), used - documented_metrics()


def test_metrics_doc_covers_exactly_the_contract() -> None:
    assert documented_metrics() == CONTRACT_METRICS


def test_metrics_doc_examples_parse() -> None:
    tool = promtool()
    if tool is None:
        pytest.skip(PROMTOOL_MISSING)
    text = METRICS_DOC.read_text(encoding="utf-8")
    # Every "- **Example**" bullet, continuation lines included; its code spans are PromQL.
    bullets = re.findall(r"^- \*\*Example\*\*(.*(?:\n  .*)*)", text, flags=re.MULTILINE)
    exprs = [c for b in bullets for c in re.findall(r"`([^`]+)`", b) if "preflight_" in c]
    assert len(exprs) >= len(CONTRACT_METRICS)
    errors = promql_parse_errors(exprs, tool)
    assert errors is None, errors


def _alert_tests() -> dict[str, tuple[int, int]]:
    """alertname -> (checks expecting alerts, checks expecting silence) over all test files."""
    seen: dict[str, tuple[int, int]] = {}
    for path in RULE_TESTS:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert doc["rule_files"] == ["../../deploy/prometheus/preflight-rules.yaml"], path
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                fire, silent = seen.get(check["alertname"], (0, 0))
                if check.get("exp_alerts"):
                    fire += 1
                else:
                    silent += 1
                seen[check["alertname"]] = (fire, silent)
    return seen


@pytest.mark.parametrize("alert", _alerts(), ids=lambda a: a["alert"])
def test_every_alert_has_firing_and_silent_unit_tests(alert: dict[str, Any]) -> None:
    fire, silent = _alert_tests().get(alert["alert"], (0, 0))
    assert fire >= 1, f"no promtool test expects {alert['alert']} to fire"
    assert silent >= 1, f"no promtool test expects {alert['alert']} to stay silent"


def test_anchor_helper_matches_github() -> None:
    assert _github_anchor("PreflightEgressBroken") == "preflightegressbroken"
    assert _github_anchor("What to do: 1. a/b") == "what-to-do-1-ab"


def test_rule_tests_directory_is_complete() -> None:
    assert {p.name for p in RULE_TESTS} >= {
        "egress.test.yaml",
        "shared_volume.test.yaml",
        "coverage.test.yaml",
        "cluster.test.yaml",
        "platform.test.yaml",
    }
    assert all(isinstance(p, Path) for p in RULE_TESTS)
