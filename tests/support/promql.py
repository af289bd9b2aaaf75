"""Shared helpers for the Prometheus-facing tests: find promtool, check PromQL parses.

PromQL is parsed by the real promtool: every expression becomes a recording rule in a
temporary rule file and `promtool check rules` parses them all in one call.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from collector.exposition import FAMILIES

REPO = Path(__file__).resolve().parents[2]
RULES_FILE = REPO / "deploy" / "prometheus" / "preflight-rules.yaml"
METRICS_DOC = REPO / "docs" / "metrics.md"
OPERATIONS_DOC = REPO / "docs" / "operations.md"
PROMTOOL_MISSING = "promtool not installed (Debian package prometheus)"

# What /metrics exposes, from the families themselves (no hand-kept copy); docs/metrics.md
# documents exactly these, and the settled names of DESIGN.md §4 are among them
# (tests/contract/test_metric_contract.py).
CONTRACT_METRICS = frozenset(f.name for f in FAMILIES)

_METRIC_NAME = re.compile(r"\bpreflight_[a-z0-9_]+\b")


def promtool() -> str | None:
    return shutil.which("promtool")


def metric_names(text: str) -> set[str]:
    """Every preflight_* metric name mentioned in a PromQL expression or template."""
    return set(_METRIC_NAME.findall(text))


def documented_metrics() -> set[str]:
    """Metric names that have their own `### name` heading in docs/metrics.md."""
    text = METRICS_DOC.read_text(encoding="utf-8")
    return set(re.findall(r"^### (preflight_[a-z0-9_]+)\s*$", text, flags=re.MULTILINE))


def promql_parse_errors(exprs: Sequence[str], tool: str) -> str | None:
    """promtool's complaint about any of `exprs`, or None when every one parses."""
    rules = [{"record": f"preflight_check:expr_{i}", "expr": e} for i, e in enumerate(exprs)]
    doc = {"groups": [{"name": "parse-check", "rules": rules}]}
    with tempfile.TemporaryDirectory(prefix="pf-promql-") as tmp:
        path = Path(tmp) / "exprs.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        proc = subprocess.run(
            [tool, "check", "rules", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    if proc.returncode == 0:
        return None
    listing = "\n".join(f"  expr_{i}: {e}" for i, e in enumerate(exprs))
    return f"{proc.stdout}{proc.stderr}\nexpressions:\n{listing}"


PROMTOOL_MISSING = "promtool not installed (Debian package prometheus)"
