"""Every PromQL query of the Grafana dashboard, with Grafana's variables substituted.

Reused by tests/contract/test_dashboard.py (parse checks) and by the end-to-end test that runs
the queries against a real Prometheus:

    from tests.support.dashboard import dashboard_queries, dashboard_query_specs
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "preflight-dashboard.json"

# What Grafana would put in place of each variable; multi-value regex variables get
# ".*" (the "All" value, allValue of the dashboard).
SUBSTITUTIONS: dict[str, str] = {
    "node": ".*",
    "target": ".*",
    "datasource": "prometheus",
    "__rate_interval": "1m",
    "__interval": "30s",
    "__range": "1h",
}

# Panels whose queries legitimately return nothing on a healthy cluster or in standalone
# mode (no Kubernetes); a "returns data" check must allow them to be empty.
MAY_BE_EMPTY: dict[tuple[str, str], str] = {
    ("Current egress failures", "A"): "only failing targets have a preflight_egress_failure series",
    ("Untrusted TLS certificates (interception)", "A"): "only while a target fails tls_untrusted",
    ("Kubernetes nodes without an agent", "A"): "empty when every node has an agent",
    ("Agents and nodes", "C"): "Kubernetes nodes: absent in standalone mode",
    ("Capacity per node", "E"): "allocatable GPUs: absent in standalone mode",
    ("Certificate expiry per target", "A"): "absent until a node completed a TLS handshake",
}

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


class UnknownVariableError(ValueError):
    """A query uses a Grafana variable this module does not know how to substitute."""


@dataclass(frozen=True)
class DashboardQuery:
    panel: str
    ref_id: str
    expr: str  # substituted, ready for Prometheus
    raw_expr: str  # as stored in the dashboard
    may_be_empty: bool


def substitute(expr: str) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in SUBSTITUTIONS:
            raise UnknownVariableError(f"unknown Grafana variable ${name} in {expr!r}")
        return SUBSTITUTIONS[name]

    return _VARIABLE.sub(repl, expr)


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for p in panels:
        yield p
        yield from iter_panels(p.get("panels", []))


def dashboard_query_specs(path: Path = DASHBOARD) -> list[DashboardQuery]:
    dash = json.loads(path.read_text(encoding="utf-8"))
    specs = []
    for panel in iter_panels(dash["panels"]):
        for target in panel.get("targets", []):
            raw = target["expr"]
            specs.append(
                DashboardQuery(
                    panel=panel["title"],
                    ref_id=target["refId"],
                    expr=substitute(raw),
                    raw_expr=raw,
                    may_be_empty=(panel["title"], target["refId"]) in MAY_BE_EMPTY,
                )
            )
    return specs


def dashboard_queries(path: Path = DASHBOARD) -> list[str]:
    """The substituted PromQL of every panel target, in dashboard order."""
    return [q.expr for q in dashboard_query_specs(path)]
